"""The X-ray CTR campaign (lao_sto_ctr, MAMBA): the layer-parameter fit, units
and collect with label arrays, noise augmentation, config checks, and the
tiny campaign end to end through Snakemake (real forward model, zarr,
2-rank Horovod U-Net training, readout, baseline, summary)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import zarr

from cbedflow.campaigns import get_campaign
from cbedflow.campaigns.lao_sto_ctr import parameter_group
from cbedflow.campaigns.lao_sto_ctr.films import FilmOptions, sample_film
from cbedflow.campaigns.lao_sto_ctr.fit import (
    FilmModel,
    fit_best_thickness,
    fit_parameters,
    refine_to_intensity,
)
from cbedflow.config import ConfigError, validate
from cbedflow.forward.ctr import ctr_amplitude, rod_grid
from cbedflow.metrics import group_r2, regression_metrics
from conftest import ROOT, train_env

GRID = rod_grid()


def _film_field(sample):
    return ctr_amplitude(GRID.h, GRID.k, GRID.l_row, sample.layers).film


def test_jacobian_matches_finite_differences():
    opts = FilmOptions(rough_top=True)
    model = FilmModel(GRID, 12, opts)
    s = sample_film(np.random.default_rng(5), opts)
    theta, names, _ = s.parameters()
    U, J = model.field_and_jacobian(theta)
    assert np.allclose(U, _film_field(s), rtol=0, atol=1e-9 * np.abs(U).max())
    assert J.shape == (len(names),) + GRID.shape
    h = 1e-6
    for j in range(len(theta)):
        t2 = theta.copy()
        t2[j] += h
        fd = (model.field_and_jacobian(t2, jacobian=False)[0] - U) / h
        scale = np.abs(J[j]).max()
        assert np.abs(fd - J[j]).max() <= 1e-4 * scale, names[j]


def test_fit_of_the_true_field_recovers_every_parameter():
    """With U known the phase problem is gone: a fit from the ideal film
    recovers every parameter (the issue: R² >= 0.99 with the true U)."""
    opts = FilmOptions()
    model = FilmModel(GRID, 12, opts)
    truth, fitted = [], []
    for i in range(10):
        s = sample_film(np.random.default_rng([11, i]), opts)
        theta, names, _ = s.parameters()
        est, cost = fit_parameters(model, _film_field(s))
        truth.append(theta)
        fitted.append(est)
        assert cost < 1e-12
    m = regression_metrics(np.array(truth), np.array(fitted), names, [""] * len(names))
    assert min(v["r2"] for v in m["targets"].values()) > 0.99
    groups = group_r2(m["targets"], [parameter_group(n) for n in names])
    assert set(groups) == {"c spacing", "B-site z", "apical O z", "planar O z", "Sr fraction p"}


def test_direct_fit_to_clean_intensities_needs_no_network():
    """The reference the readout reports beside the network: on noise-free
    intensities a least-squares fit of the 51 parameters from the ideal film
    (continuation in L) finds the truth; the parametrised phase problem is
    solved without U."""
    opts = FilmOptions()
    model = FilmModel(GRID, 12, opts)
    for i in range(2):
        s = sample_film(np.random.default_rng([13, i]), opts)
        amp = ctr_amplitude(GRID.h, GRID.k, GRID.l_row, s.layers)
        log_i = np.log10(np.abs(amp.total) ** 2)
        theta, cost = refine_to_intensity(model, log_i, model.ideal())
        assert cost < 1e-12
        assert np.allclose(theta, s.parameters()[0], atol=1e-6)


def test_fit_picks_the_film_thickness_and_a_rough_top():
    opts = FilmOptions(n_layers=(11, 12, 13), rough_top=True)
    for i in range(3):
        s = sample_film(np.random.default_rng([12, i]), opts)
        n, theta, cost = fit_best_thickness(GRID, opts, _film_field(s))
        assert n == s.layers.n_layers
        assert np.allclose(theta, s.parameters()[0], atol=1e-6)


def _config(tmp_path, **films):
    return validate({"campaign": "lao_sto_ctr", "seed": 3, "output_dir": str(tmp_path / "r"),
                     "films": {"count": 30, "per_unit": 12, **films},
                     "tasks": ["film_field"]})


def test_units_store_labels_as_arrays_and_collect_reads_them(tmp_path):
    from cbedflow.collect import collect

    cfg = _config(tmp_path, n_layers=[11, 13], rough_top=True)
    camp = get_campaign(cfg)
    units = camp.units()
    assert [u[0] for u in units] == ["s00000", "s00001", "s00002"]  # 12 + 12 + 6 films
    for u in units:
        camp.simulate_unit(*u, out=camp.unit_path(*u), progress=lambda m: None)
    out = collect(camp, camp.unit_paths(), tmp_path / "dataset.zarr", progress=lambda m: None)
    ds = zarr.open_group(str(out), mode="r")
    assert ds["log10_intensity"].shape == (30, 16, 240)
    assert ds["film_field"].shape == (30, 16 * 240, 2)
    names = ds.attrs["parameter_names"]
    assert ds["parameters"].shape == (30, len(names))
    assert names[-1] == "occ_top" and "c_12" in names and "zB_13" in names
    i = 17
    s = camp.film(i)
    assert ds.attrs["structure_names"][i] == f"film-{i:07d}"
    U = _film_field(s)
    assert np.allclose(ds["film_field"][i][:, 0], U.real.ravel(), rtol=1e-5, atol=1e-3)
    assert np.allclose(ds["film_field"][i][:, 1], U.imag.ravel(), rtol=1e-5, atol=1e-3)
    I = np.abs(ctr_amplitude(GRID.h, GRID.k, GRID.l_row, s.layers).total) ** 2
    assert np.allclose(ds["log10_intensity"][i], np.log10(I), atol=1e-5)
    p = ds["parameters"][i]
    assert int(ds["n_layers"][i]) == s.layers.n_layers
    assert np.isnan(p).sum() == 4 * (13 - s.layers.n_layers)  # a thinner film's missing layers
    values, pnames, _ = s.parameters()
    assert np.allclose([p[names.index(n)] for n in pnames], values, atol=1e-6)
    # the same config draws the same films
    again = get_campaign(cfg).film(i).parameters()[0]
    assert np.array_equal(again, values)
    # curves keep their named axes in xarray
    import xarray as xr

    x = xr.open_zarr(str(out), consolidated=False)
    assert x["film_field"].dims == ("sample", "point", "re_im")
    assert x["parameters"].dims == ("sample", "parameter")
    assert x["log10_intensity"].dims == ("sample", "rod", "L")


def test_counting_noise_and_rod_scales():
    cfg = validate({"campaign": "lao_sto_ctr", "tasks": ["film_field"],
                    "augment": {"counts_median": [1e9, 1e9], "rod_scale_sigma": 0.0}})
    camp = get_campaign(cfg)
    s = camp.film(0)
    x = np.log10(np.abs(ctr_amplitude(GRID.h, GRID.k, GRID.l_row, s.layers).total) ** 2).ravel()
    quiet, meta = camp.augment_example(x, np.random.default_rng(1), cfg)
    assert meta["counts_median"] == pytest.approx(1e9)
    assert np.abs(quiet - x).max() < 0.05  # 1e9 counts at the median: little noise
    cfg["augment"].update(counts_median=[100.0, 100.0], rod_scale_sigma=0.3)
    noisy, _ = camp.augment_example(x, np.random.default_rng(1), cfg)
    again, _ = camp.augment_example(x, np.random.default_rng(1), cfg)
    assert np.array_equal(noisy, again)  # seeded
    d = (noisy - x).reshape(16, 240)
    assert np.all(np.isfinite(noisy)) and np.abs(d).mean() > 0.05
    # the per-rod scale moves whole rods: the median shift differs between rods
    assert np.ptp(np.median(d, axis=1)) > 0.05


@pytest.mark.parametrize("change, message", [
    ({"rods": {"l_step": 0.025, "l_max": 6.01}}, "rods.l_max"),
    ({"augment": {"counts_median": [1e4, 1e2]}}, "augment.counts_median"),
    ({"films": {"n_layers": [12], "n_sto_max": 1}}, "n_sto_max"),
])
def test_bad_config_is_one_clear_line(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        validate({"campaign": "lao_sto_ctr", "tasks": ["film_field"], **change})
    assert "\n" not in str(e.value)


def _measured_csv(path, film, scale=37.0, gaps=True, extra_lines=()):
    """A 'measured' set: a film's intensities on a finer, shifted L grid
    (0.013 steps), times an arbitrary scale, with gaps in some rods."""
    from cbedflow.forward.ctr import ctr_intensity

    rows = []
    L = np.arange(0.02, 6.0, 0.013)
    for h, k in GRID.hk:
        inten = ctr_intensity(h, k, L, film.layers) * scale
        keep = np.ones_like(L, bool)
        if gaps and (h, k) == (1, 1):
            keep &= ~((L > 2.0) & (L < 2.6))  # a gap of 0.6 r.l.u.
        rows += [(h, k, l, i, np.sqrt(i)) for l, i, m in zip(L, inten, keep) if m]
    lines = ["# a_A = 3.905", *extra_lines, "h,k,L,I,sigma"]
    lines += [f"{h},{k},{l:.5f},{i:.6g},{s:.4g}" for h, k, l, i, s in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _manifest():
    return {"geometry": {"rod_hk": GRID.hk.tolist(), "l_values": GRID.L.tolist()},
            "input_scaling": {"mean": np.full(GRID.shape, 2.0).ravel().tolist(),
                              "std": np.ones(GRID.size if hasattr(GRID, "size") else
                                             16 * 240).tolist()}}


def test_measured_set_is_resampled_masked_and_scaled(tmp_path):
    from cbedflow.campaigns.lao_sto_ctr.measured import read_measured

    film = sample_film(np.random.default_rng(4), FilmOptions())
    path = _measured_csv(tmp_path / "set.csv", film)
    x, info = read_measured(path, {}, _manifest(), None)
    assert x.shape == (1, 3840)
    masked = info["masked_per_rod"]
    assert 0.08 < masked["11"] < 0.12 and masked["00"] == 0.0  # the 0.6 r.l.u. gap of 6
    assert info["masked_fraction"] == pytest.approx(masked["11"] / 16, rel=1e-6)
    grid = x.reshape(16, 240)
    r11 = [tuple(v) for v in GRID.hk].index((1, 1))
    gap = (GRID.L > 2.05) & (GRID.L < 2.55)
    assert np.all(grid[r11, gap] == 2.0)  # masked points sit at the training mean
    # elsewhere the resampled set is the film's log10 I shifted by one constant
    from cbedflow.forward.ctr import ctr_intensity

    true = np.log10(ctr_intensity(GRID.h, GRID.k, GRID.l_row, film.layers))
    d = (grid - true)[info["data"]["mask"]]
    dev = np.abs(d - np.median(d))  # linear interpolation errs only near the Bragg peaks
    assert np.quantile(dev, 0.9) < 0.05 and np.median(dev) < 0.01
    assert info["scale_factor"] > 0


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("h,k,L,I,sigma", "h,k,L,I"), "lacks column(s) sigma"),
    (lambda t: t.replace("# a_A = 3.905", "# a_A = 3.791"), "metadata a_A = 3.791"),
    (lambda t: "\n".join(x for x in t.splitlines() if not x.startswith("3,3,")),
     "rod(s) 33 missing"),
    (lambda t: t + "0,0,7.5,10,1\n", "L = 7.5 at row"),
    (lambda t: t + "0,0,1.5,-4,1\n", "intensity I = -4"),
    (lambda t: t + "0,0,1.5,nan,1\n", "I is not finite"),
    (lambda t: t + "0,0,1.5,abc,1\n", "is not a row of numbers"),
])
def test_bad_measured_set_is_one_clear_line(tmp_path, edit, message):
    from cbedflow.campaigns.lao_sto_ctr.measured import MeasuredCTRError, read_measured

    film = sample_film(np.random.default_rng(4), FilmOptions())
    path = _measured_csv(tmp_path / "set.csv", film)
    path.write_text(edit(path.read_text()))
    with pytest.raises(MeasuredCTRError, match=re.escape(message)) as e:
        read_measured(path, {}, _manifest(), None)
    assert "\n" not in str(e.value)


def test_regression_metrics_skip_missing_targets():
    y = np.array([[1.0, np.nan], [2.0, 1.0], [3.0, 3.0]])
    p = np.array([[1.0, 5.0], [2.0, 1.0], [3.0, 3.0]])
    m = regression_metrics(y, p, ["a", "b"], ["", ""])
    assert m["targets"]["a"]["r2"] == 1.0 and m["targets"]["b"]["r2"] == 1.0
    assert m["targets"]["b"]["n"] == 2


def test_measured_readout_recovers_the_film_with_calibrated_errors(tmp_path):
    """The readout of a measured set (rule predict): a film's rods on the
    model's grid at an unknown scale with 2 % Gaussian errors (sigma given),
    a gap in one rod, and the true U as the 'network's' prediction. The
    refinement against log10 I, weighted by sigma with a free scale, lands
    within its standard errors of the truth (chi² per point ~ 1), and the
    fit to the exact U is exact."""
    from cbedflow.forward.ctr import ctr_intensity
    from cbedflow.tasks import get_task

    camp = get_campaign(validate({"campaign": "lao_sto_ctr", "seed": 3,
                                  "tasks": ["film_field"]}))
    film = camp.film(7)
    rng = np.random.default_rng(11)
    lines = ["h,k,L,I,sigma"]
    for h, k in GRID.hk:
        inten = ctr_intensity(h, k, GRID.L, film.layers) * 37.0
        noisy = inten * (1 + 0.02 * rng.standard_normal(inten.shape))
        keep = ~((GRID.L > 2.0) & (GRID.L < 2.6)) if (h, k) == (1, 1) else np.ones_like(GRID.L, bool)
        lines += [f"{h},{k},{l:.4f},{i:.8g},{0.02 * t:.8g}"
                  for l, i, t, m in zip(GRID.L, noisy, inten, keep) if m]
    path = tmp_path / "set.csv"
    path.write_text("\n".join(lines) + "\n")
    U = _film_field(film)
    pred = {"l_values": GRID.L.tolist(),
            "predicted": np.stack([U.real.ravel(), U.imag.ravel()], -1)[None].tolist()}
    r = camp.readout_measured(get_task(camp, "film_field"), pred, path, camp.config,
                              progress=lambda m: None)
    truth, names, _ = film.parameters()
    assert list(names) == r["names"] and r["n_layers"] == 12
    # the gap, every point of it: 2.0 and 2.6 at a Bragg peak are measured, no point
    # between them is (interpolating from the peak would be off by decades)
    gap = np.count_nonzero((GRID.L > 2.0) & (GRID.L < 2.6))
    assert r["masked_fraction"] == pytest.approx(gap / 3840)
    exact = r["methods"]["network + fit"]
    np.testing.assert_allclose(exact["values"], truth, atol=1e-6)
    for name in ("network + fit, refined to log10 I", "direct fit to log10 I (no network)"):
        m = r["methods"][name]
        z = (np.asarray(m["values"]) - truth) / np.asarray(m["std"])
        assert 0.5 < m["chi2_red"] < 1.5, m["chi2_red"]
        assert 0.4 < np.sqrt(np.mean(z ** 2)) < 2.0 and np.abs(z).max() < 5, z
    # written by the generic step: JSON, one CSV row per parameter, the figure
    from cbedflow.readout import run_measured_readout

    pdir = tmp_path / "pred"
    pdir.mkdir()
    (pdir / "predictions.json").write_text(json.dumps(pred))
    out = tmp_path / "readout"
    run_measured_readout(camp, get_task(camp, "film_field"), pdir, path, camp.config, out,
                         progress=lambda m: None)
    rows = (out / "readout.csv").read_text().splitlines()
    assert len(rows) == 1 + len(truth) and rows[0].startswith("quantity,unit,group,network + fit")
    assert (out / "readout.png").stat().st_size > 5000


def test_tiny_ctr_campaign_end_to_end(tmp_path):
    """config/ctr-tiny.yaml through Snakemake: film shards, collect, examples
    with a noisy copy, 2-rank Horovod U-Net, evaluation, the ridge baseline
    to the parameters, the layer-parameter readout and the summary."""
    out = tmp_path / "ctr"
    env = dict(os.environ, CBEDFLOW_TRAIN_ENV=str(train_env()))
    env.pop("SNAKEMAKE_PROFILE", None)
    cmd = [str(ROOT / ".venv" / "simulate" / "bin" / "snakemake"), "--profile",
           "profiles/local", "--configfile", "config/ctr-tiny.yaml",
           "--config", f"output_dir={out}"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    ds = zarr.open_group(str(out / "dataset.zarr"), mode="r")
    assert ds.attrs["campaign"] == "lao_sto_ctr" and ds["log10_intensity"].shape[0] == 600
    train = zarr.open_group(str(out / "tasks" / "film_field" / "train_augmented.zarr"), mode="r")
    assert train["x"].shape[1:] == (3840,) and train["y"].shape[1:] == (3840, 2)
    noisy = train["counts_median"][...]
    assert np.isinf(noisy[0::2]).all() and np.isfinite(noisy[1::2]).all()
    manifest = json.loads((out / "models" / "film_field" / "all" / "manifest.json").read_text())
    assert len(manifest["input_scaling"]["mean"]) == 3840  # per point, over the training set
    log = (out / "logs" / "train" / "film_field" / "all.log").read_text()
    assert "hvd rank=1 size=2" in log
    ro = json.loads((out / "evaluation" / "film_field" / "all" / "readout.json").read_text())
    assert ro["n"] == 20 and set(ro["groups"]) == {
        "c spacing", "B-site z", "apical O z", "planar O z", "Sr fraction p"}
    assert np.isfinite(ro["baseline"]["r2_mean"]) and ro["baseline"]["all_test"]["n"] == 90
    # the reference without a network, on the same films: clean data, a direct fit wins
    direct = ro["alternatives"]["direct fit to log10 I (no network)"]
    assert direct["r2_mean"] > 0.99
    for name in ("r2_per_parameter", "parameter_parity", "density_profile"):
        assert (out / "plots" / "film_field" / "all" / "readout" / f"{name}.png").stat().st_size > 5000
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["tasks"]["film_field"]["models"]["all"]
    assert entry["readout"]["name"] == "layer_parameters"
    assert set(entry["readout"]["baseline"]["groups"]) == set(ro["groups"])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((ROOT / "config" / "ctr-tiny.yaml").read_text().replace(
        "output_dir: results-ctr-tiny", f"output_dir: {out}"))
    s = subprocess.run([sys.executable, "-m", "cbedflow", "summary", "--configfile", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "workflow")), timeout=120)
    assert s.returncode == 0, s.stderr
    assert re.search(r"film_field/all: layer_parameters R² network -?\d\.\d{3}, baseline "
                     r"-?\d\.\d{3} on 20 test samples; c spacing", s.stdout), s.stdout
    again = subprocess.run(cmd + ["-n"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert "Nothing to be done" in again.stdout + again.stderr

    # predict on a 'measured' set with a gap, through the Snakemake predict rule
    film = get_campaign(validate({"campaign": "lao_sto_ctr", "seed": 1})).film(0)
    data = _measured_csv(tmp_path / "measured.csv", film)
    base = cmd[:-2]  # without --config output_dir=...: one --config with both keys
    p = subprocess.run(base + ["--config", f"output_dir={out}", f"predict_input={data}",
                               "--", "predict"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    pred_dir = out / "predictions" / "measured-film_field-all"
    res = json.loads((pred_dir / "predictions.json").read_text())
    # the layer parameters of the measured set (clean, scale 37, a gap): the refinement
    # from the network's start recovers the film that made it
    ro = json.loads((out / "predictions" / "measured-film_field-all-readout" /
                     "readout.json").read_text())
    truth = np.asarray(film.parameters()[0])
    refined = ro["methods"]["network + fit, refined to log10 I"]
    assert np.abs(np.asarray(refined["values"]) - truth).max() < 0.02
    assert all(np.isfinite(refined["std"]))
    assert res["masked_per_rod"]["11"] > 0.05 and res["targets"] == ["Re_U", "Im_U"]
    assert np.asarray(res["predicted"]).shape == (1, 3840, 2)
    assert len((pred_dir / "predictions.csv").read_text().splitlines()) == 1 + 3840
    assert (pred_dir / "map.png").stat().st_size > 5000
    # a bad set stops with one line and writes nothing
    bad = tmp_path / "bad.csv"
    bad.write_text(data.read_text() + "0,0,1.5,-4,1\n")
    b = subprocess.run(base + ["--config", f"output_dir={out}", f"predict_input={bad}",
                               "--", "predict"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert b.returncode != 0 and "intensity I = -4" in b.stdout + b.stderr
    assert not (out / "predictions" / "bad-film_field-all").exists()
