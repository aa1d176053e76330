"""The BiFeO3 polarization campaign (campaign: bfo_polarization, seed 003):
the HAADF forward model on BiFeO3, how sub-images and their targets are cut,
noise, the config checks, the vector metrics, and config/bfo-tiny.yaml
through Snakemake with ``predict`` on a simulated image with known truth.
(Structures: tests/test_bfo_structures.py; the Gaussian-fit method:
tests/test_bfo_columns.py.)"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from cbedflow.campaigns import get_campaign
from cbedflow.campaigns.bfo_polarization import BfoPolarization, jitter_lines, noisy
from cbedflow.campaigns.bfo_polarization.columns import gaussian_fit_polarization_batch
from cbedflow.campaigns.bfo_polarization.structures import build_bfo, polarization_field
from cbedflow.config import ConfigError, load, validate
from cbedflow.metrics import vector_metrics

from conftest import train_env

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "config" / "bfo-tiny.yaml"


@pytest.fixture(scope="module")
def camp():
    return get_campaign(load(TINY))


def _static(camp, **kw):
    return replace(camp.imaging_settings(), sigmas_A={}, **kw)


@pytest.fixture(scope="module")
def uniform_image(camp):
    """A 3 x 3 cell BiFeO3 image with every Fe displaced by (+30, -20) pm,
    static lattice, no residuals, PRISM as the tiny config (seconds)."""
    from cbedflow.forward.stem_image import simulate_image

    field = np.zeros(camp.cells + (2,))
    field[...] = (30.0, -20.0)
    atoms = build_bfo(field, 4)
    img = simulate_image(atoms, _static(camp), [1])
    return field, img


def test_haadf_ranks_bi_over_fe_over_o(camp, uniform_image):
    """Z contrast: Bi columns (Z 83) brighter than Fe-O columns (Z 26 + 8),
    pure O columns darkest, at their sites (nearest pixels)."""
    field, img = uniform_image
    ppc = camp.config["imaging"]["pixels_per_cell"]
    h = img.haadf
    bi = [h[i * ppc, j * ppc] for i in range(3) for j in range(3)]
    fe = [h[int(round((i + 0.5 + 0.3 / 3.965) * ppc)), int(round((j + 0.5 - 0.2 / 3.965) * ppc))]
          for i in range(3) for j in range(3)]
    o = [h[int((i + 0.5) * ppc), j * ppc] for i in range(3) for j in range(3)]
    assert min(bi) > 2 * max(fe) and min(fe) > 1.5 * max(o), (bi, fe, o)


def test_gaussian_fit_reads_the_built_displacement_from_the_simulated_image(camp,
                                                                           uniform_image):
    """The traditional method on the simulated image recovers the field the
    atoms hold (independent of the labels: atoms -> abTEM -> fit), with the
    method's pixel locking: a Gaussian fitted to a sharper-than-Gaussian
    HAADF column sampled at 0.5 Å is pulled towards the nearest pixel centre.
    Measured (0.07 Å, 4 cells, clean): (32.8, -17.6) pm for (30, -20) pm, the
    Fe column at (4.6, 3.6) px of its window reads (4.67, 3.65); P = 0 reads
    0.0 pm, (30, 0) 30.3 pm (recentring the fit disc changed none of it)."""
    field, img = uniform_image
    cen = camp.centres_px(field, camp.config, 0).reshape(-1, 2)
    p = gaussian_fit_polarization_batch(camp.windows(img.haadf.astype(float), cen,
                                                     camp.window_px()), camp.pixel_A, 3.965)
    err = np.linalg.norm(p - field.reshape(-1, 2), axis=1)
    assert np.isfinite(p).all() and err.max() < 0.15 * np.hypot(30, 20), (p, err)
    # pixel locking: x (4.6 px) reads towards pixel 5, y (3.6 px) towards pixel 4
    assert (p[:, 0] > 30).all() and (p[:, 1] > -20).all()


def test_samples_are_seeded_and_cycle_compositions(camp):
    cfg = load(TINY)
    other = BfoPolarization(cfg)
    for i in range(6):
        a, b = camp.sample(i), other.sample(i)
        assert np.array_equal(a["field_pm"], b["field_pm"]) and a["residuals"] == b["residuals"]
        assert a["composition"] == i % 2
        assert a["kind"] in ("uniform", "stripes", "random")
    assert not np.array_equal(camp.sample(0)["field_pm"], camp.sample(2)["field_pm"])
    # the config's key order does not matter (a job gets its params sorted)
    flipped = load(TINY)
    flipped["film"]["fields"] = dict(reversed(list(flipped["film"]["fields"].items())))
    for i in range(6):
        assert BfoPolarization(flipped).sample(i)["kind"] == camp.sample(i)["kind"]
    reseeded = BfoPolarization(load(TINY) | {"seed": 5})
    assert not np.array_equal(reseeded.sample(0)["field_pm"], camp.sample(0)["field_pm"])
    # magnitudes within each composition's range
    comps = cfg["film"]["compositions"]
    for i in range(12):
        s = camp.sample(i)
        lo, hi = comps[s["composition"]]["magnitude_pm"]
        assert lo <= s["magnitude_pm"] <= hi


def test_examples_one_per_cell_with_the_cells_target(camp):
    cfg = camp.config
    rng = np.random.default_rng(0)
    field = polarization_field("random", camp.cells, 40.0, rng)
    img = np.random.default_rng(1).uniform(0.001, 0.02, (24, 24))
    task = camp.tasks["polarization"]
    train = camp.cut_examples(img, task, cfg, sample=3, split="train", target=field)
    test = camp.cut_examples(img, task, cfg, sample=3, split="test", target=field)
    n_doses = len(cfg["noise"]["doses_e_per_A2"])
    assert len(train) == 9 and len(test) == 9 * n_doses
    w = camp.window_px()
    for x, meta in train:
        assert x.shape == (w, w) and np.isinf(meta["dose_e_per_A2"])
        i, j = meta["cell_x"], meta["cell_y"]
        assert np.array_equal(meta["y"], field[i, j])
        # the window's centre pixel is the nearest pixel to the cell's B column
        c = np.rint((np.array([i, j]) + 0.5 + field[i, j] / 100 / 3.965) * 8).astype(int) % 24
        assert x[w // 2, w // 2] == img[c[0], c[1]]
    doses = sorted({m["dose_e_per_A2"] for _, m in test})
    assert doses == sorted(cfg["noise"]["doses_e_per_A2"])
    # the same call gives the same noisy examples (seeded), another split other noise
    again = camp.cut_examples(img, task, cfg, sample=3, split="test", target=field)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(test, again))
    val = camp.cut_examples(img, task, cfg, sample=3, split="validation", target=field)
    assert not np.array_equal(test[0][0], val[0][0])


def test_grid_windows_are_one_lattice_offset_per_image(camp):
    """The non-centred variant: every cell's window sits at the same offset
    from its cell centre (within half a cell), drawn per image, whatever the
    field; b_site windows follow the field instead."""
    cfg = dict(camp.config, patches={"centre": "grid", "window_cells": 2.0})
    field = polarization_field("random", camp.cells, 40.0, np.random.default_rng(4))
    c = camp.centres_px(field, cfg, 5)
    ij = (np.stack(np.meshgrid(np.arange(3), np.arange(3), indexing="ij"), -1) + 0.5) * 8
    off = c - ij
    assert np.ptp(off.reshape(-1, 2), axis=0).max() <= 1  # one offset (pixel rounding)
    assert np.abs(off).max() <= 4 + 0.5
    assert np.array_equal(c, camp.centres_px(np.zeros_like(field), cfg, 5))
    assert not np.array_equal(c, camp.centres_px(field, cfg, 6))
    b = camp.centres_px(field, camp.config, 5)
    assert np.array_equal(b, np.rint(ij + field / 100 / 3.965 * 8).astype(int))


def test_poisson_noise_scales_with_dose_and_jitter_shifts_lines():
    img = np.full((40, 40), 0.01)
    rng = np.random.default_rng(2)
    v = [np.var(noisy(img, d, 0.5, 0.0, rng, True)) for d in (1e4, 1e5)]
    # counts n = 0.01 * dose * 0.25 -> variance of n / (dose 0.25) = 0.01 / (dose 0.25)
    for var, d in zip(v, (1e4, 1e5)):
        assert var == pytest.approx(0.01 / (d * 0.25), rel=0.1)
    line = np.zeros((20, 3))
    line[5] = 1.0
    same = jitter_lines(line, 0.0, rng, True)
    assert np.array_equal(same, line)
    moved = jitter_lines(line, 3.0, np.random.default_rng(3), True)
    assert np.allclose(moved.sum(axis=0), 1.0)  # periodic shifts keep the line's sum
    assert not np.allclose(moved, line)


def test_vector_metrics_direction_and_rmse():
    y = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0], [0.1, 0.0]])
    p = np.array([[10.0, 5.0], [8.0, 0.0], [-10.0, 0.0], [-5.0, 0.0]])
    m = vector_metrics(y, p)
    # 4th has |y| < a tenth of the largest: not scored for direction
    assert m["n_direction"] == 3 and m["direction_correct"] == pytest.approx(2 / 3)
    d = np.linalg.norm(p - y, axis=1)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(d ** 2)))


@pytest.mark.parametrize("edit,message", [
    ({"film.compositions": [{"name": "X", "dopant_fraction": 0.0, "magnitude_pm": [0, 120]}]},
     r"magnitude_pm \[0, 120\] is invalid; valid: .* < 99 pm"),
    ({"film.compositions": [{"name": "X", "dopant": "La", "dopant_fraction": 0.1,
                             "magnitude_pm": [0, 20]}],
      "imaging.phonons": {"sigmas_A": {"Bi": 0.08, "Fe": 0.07, "O": 0.09}}},
     r"sigmas_A': no value for La"),
    ({"imaging.interpolation": [8, 8]}, r"'imaging.interpolation': value \[8, 8\] is invalid"),
    ({"patches.window_cells": 6.0}, r"'patches.window_cells': value 6.0 is invalid"),
    ({"film.fields": {"uniform": 0, "stripes": 0, "random": 0}}, r"'film.fields': value"),
    ({"imaging.sampling_A": 0.12}, r"HAADF detector .* valid: a finer sampling_A"),
    ({"residuals.mistilt_mrad": [3.0, 1.0]}, r"residuals.mistilt_mrad': value \[3.0, 1.0\]"),
])
def test_bad_config_is_one_clear_line(edit, message):
    raw = {"campaign": "bfo_polarization", "seed": 1}
    for k, v in edit.items():
        section, _, key = k.partition(".")
        raw.setdefault(section, {})[key] = v
    with pytest.raises(ConfigError, match=message) as info:
        validate(raw)
    assert "\n" not in str(info.value)


def test_tiny_bfo_campaign_end_to_end(tmp_path):
    """config/bfo-tiny.yaml through Snakemake: image shards, collect (HAADF,
    the ABF aux signal, the per-cell field label), one sub-image per cell
    with its own target, noisy held-out images at every dose, 2-rank Horovod
    2D CNNs (all compositions; undoped only with every composition tested),
    the Gaussian-fit baseline on the same test sub-images, breakdowns by dose
    and composition, the summary; a rerun has nothing to do; then
    ``snakemake predict`` on a larger simulated image with its truth."""
    out = tmp_path / "bfo"
    env = dict(os.environ, CBEDFLOW_TRAIN_ENV=str(train_env()))
    env.pop("SNAKEMAKE_PROFILE", None)
    cmd = [str(ROOT / ".venv" / "simulate" / "bin" / "snakemake"), "--profile",
           "profiles/local", "--configfile", str(TINY), "--config", f"output_dir={out}"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    ds = zarr.open_group(str(out / "dataset.zarr"), mode="r")
    assert ds.attrs["campaign"] == "bfo_polarization" and ds["haadf"].shape == (24, 24, 24)
    assert ds["abf"].shape == (24, 24, 24) and ds["polarization_pm"].shape == (24, 3, 3, 2)
    doped = ds["doped"][...]
    assert doped.tolist() == [0, 1] * 12
    test = zarr.open_group(str(out / "tasks" / "polarization" / "test.zarr"), mode="r")
    assert test["y"].shape[1:] == (2,) and test["x"].shape[1:] == (17, 17)
    # every test image at both doses, every cell's own target
    si, cx, cy = (test[k][...] for k in ("structure_index", "cell_x", "cell_y"))
    field = ds["polarization_pm"][...]
    assert np.allclose(test["y"][...], field[si, cx, cy])
    assert sorted(set(test["dose_e_per_A2"][...].tolist())) == [5000.0, 50000.0]
    undoped = zarr.open_group(str(out / "tasks" / "polarization_undoped" / "train.zarr"),
                              mode="r")
    assert set(ds["doped"][...][undoped["structure_index"][...]].tolist()) == {0}
    ut = zarr.open_group(str(out / "tasks" / "polarization_undoped" / "test.zarr"), mode="r")
    assert set(ut["composition"][...].tolist()) == {0, 1}
    for task in ("polarization", "polarization_undoped"):
        log = (out / "logs" / "train" / task / "all.log").read_text()
        assert "hvd rank=1 size=2" in log
        ev = json.loads((out / "evaluation" / task / "all" / "metrics.json").read_text())
        base = json.loads((out / "evaluation" / task / "all" / "baseline.json").read_text())
        for m in (ev, base):
            assert set(m["mae_by_dose_e_per_A2"]) == {"5000.0", "50000.0"}
            assert set(m["mae_by_composition"]) == {"0", "1"}
            assert 0 <= m["vector"]["direction_correct"] <= 1 and m["vector"]["rmse"] > 0
        assert base["n_train"] == 0 and base["n_test"] == ev["n_test"] == test["y"].shape[0]
        assert base["n_failed"] < base["n_test"] / 4
    summary = json.loads((out / "summary.json").read_text())
    s = summary["tasks"]["polarization"]["models"]["all"]
    assert s["baseline"]["method"].startswith("Gaussian fits") and "vector" in s["cnn"]
    assert (out / "plots" / "dataset_overview.png").stat().st_size > 5000
    again = subprocess.run(cmd + ["-n"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert "Nothing to be done" in again.stdout + again.stderr

    # predict: a simulated image (the first test image tiled 2 x 2, so 36 cells)
    # with its truth beside it; B sites found by the column finder
    i = int(si[0])
    img = np.tile(ds["haadf"][i], (2, 2))
    f = np.tile(field[i], (2, 2, 1))
    ij = np.stack(np.meshgrid(np.arange(6), np.arange(6), indexing="ij"), -1) + 0.5
    b_px = (ij + f / 100 / 3.965) * 8
    data = tmp_path / "film.npy"
    np.save(data, img.T)  # rows = y, as a microscope writes it
    (tmp_path / "film.truth.json").write_text(json.dumps(
        {"b_sites_px": b_px.reshape(-1, 2).tolist(),
         "polarization_pm": f.reshape(-1, 2).tolist()}))
    base_cmd = cmd[:-2]
    p = subprocess.run(base_cmd + ["--config", f"output_dir={out}", f"predict_input={data}",
                                   "predict={scan_step_A: 0.4956, task: polarization}",
                                   "--", "predict"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    res = json.loads((out / "predictions" / "film-polarization-all" / "predictions.json")
                     .read_text())
    # columns within half a window of the edge have no whole window: 4 x 4 inner cells
    n = len(res["centres_px"])
    assert 16 <= n <= 36 and np.asarray(res["predicted"]).shape == (n, 2)
    truth = np.asarray(res["truth_pm"])
    assert np.isfinite(truth).all()  # every found column matched a true one
    assert (out / "predictions" / "film-polarization-all" / "map.png").stat().st_size > 5000
    coarse = tmp_path / "coarse.npy"
    np.save(coarse, img.T)
    bad = subprocess.run(base_cmd + ["--config", f"output_dir={out}", f"predict_input={coarse}",
                                     "predict={scan_step_A: 0.6, task: polarization}",
                                     "--", "predict"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode != 0 and "is coarser than the model's" in bad.stdout + bad.stderr
    assert not (out / "predictions" / "coarse-polarization-all").exists()


def test_film_on_a_srtio3_substrate(camp):
    """film.substrate_cells: the first cells along x are SrTiO3 with P = 0,
    the dopant only in the film, the label read back from the atoms; in the
    image the Sr columns are darker than the Bi columns (Z 38 vs 83)."""
    from cbedflow.forward.stem_image import simulate_image

    cfg = load(TINY)
    cfg["film"]["substrate_cells"] = 1
    c = BfoPolarization(cfg)
    s = c.sample(0)
    assert np.all(s["field_pm"][:1] == 0) and np.abs(s["field_pm"][1:]).max() > 0
    atoms = c.structure(0, s)
    sym = np.array(atoms.get_chemical_symbols())
    x = atoms.positions[:, 0]
    assert set(sym[x < 0.75 * 3.965]) >= {"Sr", "Ti"} and "Bi" not in sym[x < 0.25]
    assert not ({"Sr", "Ti"} & set(sym[x > 1.25 * 3.965]))
    from cbedflow.campaigns.bfo_polarization.structures import measure_polarization

    got = measure_polarization(atoms, c.cells, 3.965, a_sites=("Bi", "Sm", "Sr"),
                               b_site=("Fe", "Ti"))
    assert np.allclose(got, s["field_pm"], atol=1e-6)
    img = simulate_image(atoms, _static(c), [1])
    ppc = 8
    sr = img.haadf[0, ppc]  # corner (0, 1): A column between substrate cells... shared edge
    bi = img.haadf[2 * ppc, ppc]  # corner (2, 1): inside the film
    assert bi > 1.5 * sr
    bad = dict(load(TINY)["film"], substrate_cells=3)
    with pytest.raises(ConfigError, match=r"'film.substrate_cells': value 3 is invalid"):
        validate({"campaign": "bfo_polarization", "film": bad})
