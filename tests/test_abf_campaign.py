"""The ABF-STEM tilt campaign (abf_tilts, seed 002): the image simulation's
physics, the campaign's draws, examples, noise and baseline, its config
checks, and config/abf-tiny.yaml through Snakemake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from cbedflow.campaigns import get_campaign
from cbedflow.campaigns.abf_tilts import SYSTEMS
from cbedflow.campaigns.abf_tilts.structures import build_tilted_perovskite, project
from cbedflow.config import ConfigError, load, validate
from cbedflow.forward import SimulationConfigError
from cbedflow.forward.stem_image import (ImagingSettings, Residuals, shear_for_mistilt,
                                         simulate_image)

ROOT = Path(__file__).resolve().parents[1]


def train_env() -> Path:
    return Path(os.environ.get("CBEDFLOW_TRAIN_ENV", ROOT / ".venv" / "train"))


def _sto_110(repeats: int = 1):
    return project(build_tilted_perovskite("a0a0a0", (0.0, 0.0, 0.0)), "110", repeats)


def _columns(atoms, pixels):
    """Projected columns of ``atoms`` on the scan grid: {(i, j): set of
    elements}, for columns that fall on a pixel."""
    step = np.diag(atoms.cell)[:2] / np.asarray(pixels)
    out: dict = {}
    for sym, (x, y, _) in zip(atoms.get_chemical_symbols(), atoms.positions):
        f = np.array([x, y]) / step
        if np.abs(f - np.round(f)).max() < 1e-3:
            key = tuple(int(v) % p for v, p in zip(np.round(f), pixels))
            out.setdefault(key, set()).add(sym)
    return out


@pytest.fixture(scope="module")
def sto_images():
    """Cubic SrTiO3 (110)pc, 11 Å, static lattice, PRISM and multislice on
    one zone cell; 16 x 24 pixels put every column on a pixel."""
    atoms = _sto_110()
    out = {}
    for method in ("prism", "multislice"):
        s = ImagingSettings(method=method, tile=(1, 1), sampling_A=0.06, pixels=(16, 24))
        out[method] = simulate_image(atoms, s, [0])
    return atoms, out


def test_haadf_and_abf_rank_the_columns_as_the_physics_says(sto_images):
    """HAADF: Sr-O > Ti > O columns (Z contrast); ABF: a pure O column is a
    dark dip against the empty channel (what makes ABF see oxygen)."""
    atoms, images = sto_images
    img = images["prism"]
    cols = _columns(atoms, (16, 24))
    # (110)pc: Sr-O, pure Ti and pure O columns
    kinds = {"SrO": [], "Ti": [], "O": []}
    for key, elems in cols.items():
        kinds["".join(sorted(elems, key=lambda e: e == "O"))].append(key)
    assert all(len(v) >= 4 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    haadf = {k: np.mean([img.haadf[p] for p in v]) for k, v in kinds.items()}
    assert haadf["SrO"] > haadf["Ti"] > haadf["O"], haadf
    # the pixel farthest from every column: the channel between them
    grid = np.stack(np.meshgrid(np.arange(16), np.arange(24), indexing="ij"), -1)
    keys = np.array(list(cols))
    d = np.abs(grid[:, :, None, :] - keys[None, None])
    d = np.minimum(d, np.array([16, 24]) - d)
    far = np.unravel_index(np.linalg.norm(d, axis=-1).min(axis=-1).argmax(), (16, 24))
    abf_o = np.mean([img.abf[p] for p in kinds["O"]])
    assert abf_o < img.abf[far] - 0.02, (abf_o, img.abf[far])
    assert 0.3 < img.abf.mean() < 1.0 and 0 < img.haadf.mean() < 0.05


def test_prism_on_one_zone_cell_equals_multislice_on_it(sto_images):
    """PRISM with interpolation = tile is multislice with the probe window
    of one zone cell: the same images to float32 precision (the difference
    from a converged multislice, the shortcut's error, is measured in
    docs/abf.md)."""
    _, images = sto_images
    a, b = images["prism"].abf, images["multislice"].abf
    contrast = np.linalg.norm(b - b.mean())
    assert np.linalg.norm(a - b) / contrast < 0.01
    assert np.abs(images["prism"].haadf - images["multislice"].haadf).max() < \
        0.02 * images["multislice"].haadf.max()


def test_defocus_changes_the_image_and_mistilt_shears_the_atoms():
    atoms = _sto_110(2)
    s = ImagingSettings(method="prism", tile=(1, 1), sampling_A=0.07, pixels=(8, 12))
    a = simulate_image(atoms, s, [0]).abf
    b = simulate_image(atoms, s, [0], Residuals(defocus_A=60.0)).abf
    assert np.abs(a - b).max() > 0.01
    sheared = shear_for_mistilt(atoms, (2.0, 0.0))
    z = atoms.positions[:, 2] - atoms.positions[:, 2].min()
    shift = (sheared.positions[:, 0] - atoms.positions[:, 0]) % atoms.cell[0, 0]
    shift = np.where(shift > atoms.cell[0, 0] / 2, shift - atoms.cell[0, 0], shift)
    assert np.allclose(shift, z * np.tan(2e-3), atol=1e-9)
    assert np.allclose(sheared.positions[:, 1:], atoms.positions[:, 1:])


def test_a_haadf_detector_beyond_the_grid_is_one_line():
    s = ImagingSettings(sampling_A=0.12, pixels=(8, 12))
    with pytest.raises(SimulationConfigError, match=r"HAADF detector 75.0-.* mrad does not "
                       r"fit below the .* cutoff of 0.12 Å sampling; valid: a finer"):
        s.check((7.81, 11.04))
    with pytest.raises(SimulationConfigError, match="imaging method 'fft' is invalid"):
        ImagingSettings(method="fft")


def _mirrored_x(atoms):
    """``atoms`` mirrored x -> -x in its periodic cell (built here by hand,
    independently of the campaign's image operation)."""
    out = atoms.copy()
    pos = out.positions.copy()
    pos[:, 0] = (-pos[:, 0]) % atoms.cell[0, 0]
    out.positions = pos
    return out


@pytest.mark.parametrize("system, angles", [("a-a-a-", (8.0, 8.0, 8.0)),
                                            ("a-b+a-", (9.0, 5.0, 9.0))])
def test_mirrored_training_image_is_the_mirrored_structures_image(system, angles):
    """``mirror_x`` of abTEM's image of a tilted structure is abTEM's image of
    the structure mirrored x -> -x (static lattice, PRISM on one zone cell);
    the mirror is the twin domain (no roll of the original image matches it)
    and keeps the labels: the same space group and the same tilt
    magnitudes."""
    from cbedflow.campaigns.abf_tilts import mirror_x
    from cbedflow.campaigns.abf_tilts.structures import measure_tilts

    atoms = project(build_tilted_perovskite(system, angles), "110", 1)
    mirrored = _mirrored_x(atoms)
    cell = atoms.cell.array
    pixels = tuple(int(round(L / 0.4)) for L in (cell[0, 0], cell[1, 1]))
    s = ImagingSettings(method="prism", tile=(1, 1), sampling_A=0.07, pixels=pixels)
    a = simulate_image(atoms, s, [0]).abf
    b = simulate_image(mirrored, s, [0]).abf
    contrast = np.linalg.norm(a - a.mean())
    assert np.linalg.norm(mirror_x(a) - b) / contrast < 1e-3
    assert np.linalg.norm(a - b) / contrast > 1e-2          # not symmetric itself
    assert np.linalg.norm(np.flip(a, 0) - b) / contrast > 1e-2  # the one-pixel roll matters
    # the mirror is the twin domain: no roll of the original's image gives it
    rolls = min(np.linalg.norm(np.roll(b, (i, j), (0, 1)) - a) for i in range(pixels[0])
                for j in range(pixels[1]))
    assert rolls / contrast > 0.1
    np.testing.assert_allclose(np.abs(measure_tilts(mirrored)).mean(axis=0),
                               np.abs(measure_tilts(atoms)).mean(axis=0), atol=1e-6)
    import spglib

    def number(at):
        return spglib.get_symmetry_dataset((at.cell.array, at.get_scaled_positions(),
                                            at.numbers), symprec=1e-3).number
    assert number(mirrored) == number(atoms)


def test_train_mirror_doubles_the_training_copies_only():
    """``patches.train_mirror`` adds a mirrored twin of every training copy
    (metadata mirrored = 1), none to validation and test; off, it hashes as
    absent (runs made before the option are not rerun)."""
    from cbedflow.campaigns.abf_tilts import mirror_x

    camp = get_campaign(validate({"campaign": "abf_tilts", "seed": 1}))
    task = camp.tasks["tilt_system"]
    img = np.random.default_rng(0).random((12, 16))
    cfg = {"seed": 1, "patches": {"train_windows": 3, "train_mirror": True}}
    train = camp.cut_examples(img, task, cfg, sample=4, split="train")
    test = camp.cut_examples(img, task, cfg, sample=4, split="test")
    assert [m["mirrored"] for _, m in train] == [0, 0, 0, 1, 1, 1]
    assert [m["mirrored"] for _, m in test] == [0]
    for (x, m), (xm, mm) in zip(train[:3], train[3:]):
        np.testing.assert_array_equal(xm, mirror_x(x))
        assert (m["roll_x"], m["roll_y"]) == (mm["roll_x"], mm["roll_y"])
    off = camp.cut_examples(img, task, {**cfg, "patches": {"train_windows": 3}},
                            sample=4, split="train")
    assert len(off) == 3 and all(np.array_equal(a[0], b[0]) for a, b in zip(off, train))
    assert camp.hashed_section("patches", {"train_windows": 3, "train_mirror": False}) == \
        {"train_windows": 3}
    assert camp.hashed_section("patches", {"train_windows": 3, "train_mirror": True}) == \
        {"train_windows": 3, "train_mirror": True}


def test_interface_joins_two_systems_coherently():
    from cbedflow.campaigns.abf_tilts.interface import Side, build_interface, truth_at
    from cbedflow.campaigns.abf_tilts.structures import measure_tilts

    a = build_interface(Side("a0a0a0", (0.0, 0.0, 0.0), 2), Side("a-a-a-", (8.0,) * 3, 3))
    assert len(a) == 5 * 80 * 2  # 5 zone cells of 80 atoms (twice the 2x2x2 cell), 2 repeats
    cells = a.info["cells"]
    assert [c[2] for c in cells] == ["a0a0a0"] * 2 + ["a-a-a-"] * 3
    assert cells[-1][1] == pytest.approx(a.cell[0, 0])
    # the film is stretched to the substrate in the interface plane (its tilts shrink it)
    assert a.info["film_strain"][0] > 0.01 and a.info["film_strain"][0] == \
        pytest.approx(a.info["film_strain"][1])
    assert truth_at(cells, [1.0, cells[3][0] + 0.1, a.cell[0, 0] + 1.0]) == [
        cells[0][2:], cells[3][2:], cells[0][2:]]
    # away from the interfaces the octahedra keep their tilts (strain aside)
    film = a[a.positions[:, 0] > cells[3][0]]
    film = film[film.positions[:, 0] < cells[3][1]]
    tilts = np.abs(measure_tilts(film))
    assert np.median(tilts) == pytest.approx(8.0, abs=0.5)


def test_windows_are_scored_against_the_side_they_lie_in():
    """A hand-made truth: substrate a0a0a0 on [0, 10) Å, film a-a-a- 8 deg on
    [10, 20) Å; windows 4 Å wide every 2 Å (the one across x = 10 Å is not
    scored)."""
    from cbedflow.campaigns.abf_tilts.interface import score_windows, window_sides

    sides = [{"name": "substrate", "system": "a0a0a0", "angles_deg": [0.0, 0.0, 0.0],
              "x0_A": 0.0, "x1_A": 10.0},
             {"name": "film", "system": "a-a-a-", "angles_deg": [8.0, 8.0, 8.0],
              "x0_A": 10.0, "x1_A": 20.0}]
    x0 = np.array([0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0])
    side = window_sides(sides, x0, 4.0)
    assert side.tolist() == [0, 0, 0, 0, -1, 1, 1, 1, 1]
    assert window_sides(sides, np.array([6.04]), 4.0).tolist() == [0]  # within tolerance
    systems = ["a0a0a0", "a-a-a-", "a0a0a0", "a0a0a0", "a-a-a-", "a-a-a-", "a-a-a-",
               "a0a0c-", "a-a-a-"]
    angles = np.zeros((9, 3))
    angles[5:] = [[7.0, 8.0, 9.0]] * 4
    angles[1] = [2.0, 0.0, 0.0]
    angles[4] = [100.0, 100.0, 100.0]  # across the interface: not scored
    s = score_windows(sides, side, systems=systems, angles_deg=angles)
    assert (s["windows"], s["scored"]) == (9, 8)
    assert s["windows_by_side"] == {"substrate": 4, "film": 4}
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["accuracy_by_side"] == {"substrate": 0.75, "film": 0.75}
    assert s["mae_deg"] == pytest.approx([(2 + 4) / 8, 0.0, 4 / 8])
    assert s["mae_deg_by_side"]["substrate"] == pytest.approx([0.5, 0.0, 0.0])
    assert s["mae_deg_by_side"]["film"] == pytest.approx([1.0, 0.0, 1.0])
    only_film = score_windows(sides, np.array([1, 1, -1]), systems=["a-a-a-"] * 3)
    assert only_film["accuracy_by_side"] == {"film": 1.0}
    assert only_film["windows_by_side"] == {"substrate": 0, "film": 2}


def test_square_pixels_resamples_a_periodic_image_exactly():
    """A band-limited periodic image at 0.5 x 0.75 Å: resampled along y to
    0.5 Å it equals the same function sampled there."""
    from cbedflow.campaigns.abf_tilts.interface import square_pixels

    def f(x, y):
        return 1.0 + 0.3 * np.cos(2 * np.pi * y / 12.0) + 0.2 * np.sin(2 * np.pi * (x + 2 * y)
                                                                      / 12.0)

    x = np.arange(8) * 0.5
    y = np.arange(16) * 0.75  # 12 Å
    img = f(x[None, :], y[:, None])
    sq = square_pixels(img, (0.5, 0.75))
    assert sq.shape == (24, 8)
    ys = np.arange(24) * 0.5
    assert np.allclose(sq, f(x[None, :], ys[:, None]), atol=1e-12)


@pytest.mark.parametrize("showcase, message", [
    ({"film": {"system": "a0a0z-"}},
     r"'showcase.film.system': value 'a0a0z-' is invalid; valid: one of 'a0a0a0'"),
    ({"film": {"system": "a+a+a+"}},
     r"'showcase.film.system': value 'a\+a\+a\+' is not a tilt system the models learn; "
     r"valid: one of tilts.systems \(a0a0a0, a0a0c-, a-a-a-\)"),
    ({"substrate": {"tilt_deg": 3.0}},
     r"'showcase.substrate.tilt_deg': value 3.0 is invalid for a0a0a0; valid: 0"),
    ({"film": {"system": "a0a0c-", "tilt_deg": 0.0}},
     r"'showcase.film.tilt_deg': value 0.0 is invalid for a0a0c-; valid: > 0"),
    ({"cells": 3}, r"unknown key\(s\) 'cells' in 'showcase'; valid keys: enabled, substrate"),
])
def test_bad_showcase_is_one_clear_line(showcase, message):
    """Checked at validation, before any simulation."""
    raw = {**_tiny(), "showcase": {"enabled": True, **showcase}}
    with pytest.raises(ConfigError, match=message) as info:
        validate(raw)
    assert "\n" not in str(info.value)


def test_showcase_is_off_unless_asked():
    assert not get_campaign(validate({"campaign": "abf_tilts", "seed": 1})).has_showcase()
    assert get_campaign(_tiny()).has_showcase()
    assert not get_campaign(validate({})).has_showcase()  # a campaign without one


def test_measured_image_is_resampled_windowed_and_checked(tmp_path):
    """read_measured runs where predict runs: in the training environment
    (TensorFlow resamples); the checks print one line each."""
    img = np.random.default_rng(0).uniform(0.5, 1.0, (44, 96))  # rows = y
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "small.npy", img[:10])
    script = f"""
import json, numpy as np
from cbedflow.campaigns.abf_tilts.measured import read_measured
from cbedflow.predict import PredictError
m = {{"geometry": {{"input_shape": [16, 22], "pixel_A": [0.488, 0.502]}}}}
x, info = read_measured("{tmp_path}/img.npy", {{"scan_step_A": 0.488}}, m, None)
out = {{"shape": list(x.shape), "grid": info["window_grid"], "image": info["image_shape"],
        "first": float(np.abs(x[0][:8, :8] - np.load("{tmp_path}/img.npy").T[:8, :8]).max())}}
for path, opts in (("img", {{}}), ("img", {{"scan_step_A": 0.6}}), ("small", {{"scan_step_A": 0.488}})):
    try:
        read_measured(f"{tmp_path}/{{path}}.npy", opts, m, None)
    except PredictError as exc:
        out.setdefault("errors", []).append(str(exc))
print(json.dumps(out))
"""
    r = subprocess.run([str(train_env() / "bin" / "python"), "-c", script], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "workflow")))
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["shape"] == [22, 16, 22] and out["grid"] == [11, 2] and out["image"] == [96, 43]
    assert out["first"] < 0.1  # x resampled by 1.0 keeps the pixels (y by 0.97)
    e = out["errors"]
    assert len(e) == 3 and all("\n" not in m for m in e)
    assert "no pixel size; give --scan-step-A" in e[0]
    assert "pixel [0.6, 0.6] Å is coarser than the model's [0.488, 0.502] Å by 1.23x" in e[1]
    assert "smaller than one model window" in e[2]


def _tiny(**edit) -> dict:
    cfg = load(ROOT / "config" / "abf-tiny.yaml")
    for k, v in edit.items():
        section, _, key = k.partition(".")
        cfg[section][key] = v
    return cfg


def test_samples_are_drawn_from_the_seed_and_cycle_the_systems():
    camp = get_campaign(_tiny())
    a, b = camp.sample(4), get_campaign(_tiny()).sample(4)
    assert a == b
    systems = [camp.sample(i)["system"] for i in range(6)]
    assert systems == ["a0a0a0", "a0a0c-", "a-a-a-"] * 2
    for i in range(1, 30, 3):  # a-a-a-: three equal angles in range
        s = camp.sample(i + 1)
        assert s["system"] == "a-a-a-" and len(set(s["angles"])) == 1
        assert 6.0 <= s["angles"][0] <= 12.0
    other = get_campaign(validate({**_tiny(), "seed": 1})).sample(4)
    assert other["angles"] != a["angles"]
    assert camp.sample_classes(camp.tasks["tilt_system"])["abf-0000005"] == \
        SYSTEMS.index("a-a-a-")


def test_a_grown_campaign_keeps_its_simulated_units():
    """tilts.per_system only says how many images exist (image i is drawn
    from (seed, i) alone): a unit keeps its key, and so its stored images,
    when the campaign grows; what the images depend on still changes it."""
    small, grown = get_campaign(_tiny()), get_campaign(_tiny(**{"tilts.per_system": 24}))
    assert grown.n_samples == 2 * small.n_samples and len(grown.units()) > len(small.units())
    assert all(small.sample(i) == grown.sample(i) for i in range(small.n_samples))
    for name, part, _ in small.units():
        assert small.unit_key(name, part) == grown.unit_key(name, part)
    assert get_campaign(validate({**_tiny(), "seed": 1})).unit_key("s00000", "images") != \
        small.unit_key("s00000", "images")
    assert get_campaign(_tiny(**{"tilts.angle_range_deg": [5.0, 12.0]})).unit_key(
        "s00000", "images") != small.unit_key("s00000", "images")
    # a last unit that held fewer images is not the grown campaign's full unit
    odd = get_campaign(_tiny(**{"tilts.per_system": 11}))  # 33 images, units of 6
    last = odd.units()[-1][0]
    assert len(odd.shard(last)) < len(small.shard(last))
    assert odd.unit_key(last, "images") != small.unit_key(last, "images")


def test_examples_are_rolled_windows_and_noise_is_poisson():
    camp = get_campaign(_tiny())
    cfg = camp.config
    img = np.random.default_rng(0).uniform(0.5, 0.9, (16, 22))
    train = camp.cut_examples(img, camp.tasks["tilt_system"], cfg, sample=3, split="train")
    test = camp.cut_examples(img, camp.tasks["tilt_system"], cfg, sample=3, split="test")
    assert len(train) == cfg["patches"]["train_windows"] and len(test) == 1
    for x, meta in train:
        assert np.array_equal(x, np.roll(img, (meta["roll_x"], meta["roll_y"]), (0, 1)))
    assert len({(m["roll_x"], m["roll_y"]) for _, m in train}) > 1
    # the two-head network (tilt_joint) is trained and tested on tilt_system's very
    # examples: the same rolls, so both read the same test images
    joint = camp.cut_examples(img, camp.tasks["tilt_joint"], cfg, sample=3, split="train")
    assert [m for _, m in joint] == [m for _, m in train]
    angles = camp.cut_examples(img, camp.tasks["tilt_angles"], cfg, sample=3, split="train")
    assert [m for _, m in angles] != [m for _, m in train]
    # the baseline's Fourier amplitudes do not see the roll
    f = camp.baseline_features(np.stack([x for x, _ in train]), cfg)
    assert np.allclose(f, f[0], atol=1e-10)
    # counting noise: unbiased, variance x / dose
    flat = np.full((200, 200), 0.7)
    noisy, meta = camp.augment_example(flat, np.random.default_rng(1), cfg)
    dose = meta["dose_e_per_pixel"]
    assert 2000 <= dose <= 20000
    assert abs(noisy.mean() - 0.7) < 5 * np.sqrt(0.7 / dose / flat.size)
    assert noisy.var() == pytest.approx(0.7 / dose, rel=0.05)


@pytest.mark.parametrize("edit, message", [
    ({"tilts.angle_range_deg": [10.0, 5.0]}, r"tilts.angle_range_deg': value \[10.0, 5.0\]"),
    ({"tilts.systems": ["a0b-b-"], "tilts.angle_range_deg": [2.0, 20.0]},
     r"a0b-b- at 20.0 deg: zone 110 needs strain"),
    ({"tilts.compositions": [{"name": "CaTiO3", "a_site": "Ca", "b_site": "Zr",
                              "bond_length_A": 1.95}]},
     r"sigmas_A': no value for Zr"),
    ({"imaging.sampling_A": 0.12}, r"HAADF detector .* valid: a finer sampling_A"),
    ({"residuals.defocus_A": [5.0, -5.0]}, r"residuals.defocus_A': value \[5.0, -5.0\]"),
])
def test_bad_config_is_one_clear_line(edit, message):
    raw = {"campaign": "abf_tilts", "seed": 1}
    for k, v in edit.items():
        section, _, key = k.partition(".")
        raw.setdefault(section, {})[key] = v
    with pytest.raises(ConfigError, match=message) as info:
        validate(raw)
    assert "\n" not in str(info.value)


def test_tiny_abf_campaign_end_to_end(tmp_path):
    """config/abf-tiny.yaml through Snakemake: image shards, collect (ABF and
    the HAADF aux signal), rolled examples with Poisson copies, two 2-rank
    Horovod 2D CNNs, evaluation by tilt system and tilt magnitude, the |FFT|
    baseline, the summary, the showcase's tilt maps of a simulated interface
    in the report; a rerun has nothing to do."""
    out = tmp_path / "abf"
    env = dict(os.environ, CBEDFLOW_TRAIN_ENV=str(train_env()))
    env.pop("SNAKEMAKE_PROFILE", None)
    cmd = [str(ROOT / ".venv" / "simulate" / "bin" / "snakemake"), "--profile",
           "profiles/local", "--configfile", "config/abf-tiny.yaml",
           "--config", f"output_dir={out}"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    ds = zarr.open_group(str(out / "dataset.zarr"), mode="r")
    assert ds.attrs["campaign"] == "abf_tilts" and ds["abf"].shape == (36, 16, 22)
    assert ds["haadf"].shape == (36, 16, 22)
    systems = ds["tilt_system"][...]
    tilted = SYSTEMS.index("a-a-a-")
    assert sorted(set(systems.tolist())) == sorted(SYSTEMS.index(s) for s in
                                                   ("a0a0a0", "a0a0c-", "a-a-a-"))
    angles = np.stack([ds[f"{a}_deg"][...] for a in ("alpha", "beta", "gamma")], 1)
    assert np.all(angles[systems == 0] == 0) and np.all(angles[systems == tilted] >= 6)
    # tilted images differ from untilted ones beyond the phonon noise between two
    # untilted images
    abf = ds["abf"][...]
    flat = np.flatnonzero(systems == 0)
    noise = np.linalg.norm(abf[flat[0]] - abf[flat[1]])
    assert np.linalg.norm(abf[np.flatnonzero(systems == tilted)[0]] - abf[flat[0]]) > noise
    train = zarr.open_group(str(out / "tasks" / "tilt_system" / "train_augmented.zarr"),
                            mode="r")
    dose = train["dose_e_per_pixel"][...]
    assert np.isinf(dose[0::2]).all() and np.isfinite(dose[1::2]).all()
    assert len(set(zip(train["roll_x"][...].tolist(), train["roll_y"][...].tolist()))) > 10
    for task in ("tilt_system", "tilt_angles"):
        log = (out / "logs" / "train" / task / "all.log").read_text()
        assert "hvd rank=1 size=2" in log
    ev = json.loads((out / "evaluation" / "tilt_system" / "all" / "metrics.json").read_text())
    assert ev["n_test"] == 9 and "accuracy_by_max_tilt_bin" in ev
    reg = json.loads((out / "evaluation" / "tilt_angles" / "all" / "metrics.json").read_text())
    assert set(reg["mae_by_tilt_system"]) == {str(v) for v in set(systems.tolist())}
    assert set(reg["targets"]) == {"alpha_deg", "beta_deg", "gamma_deg"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"tilt_system", "tilt_angles"}
    base = summary["tasks"]["tilt_system"]["models"]["all"]["baseline"]
    assert 0 <= base["accuracy"] <= 1
    assert (out / "plots" / "dataset_overview.png").stat().st_size > 5000

    # the showcase: tilt maps of a simulated interface (a0a0a0 | a-a-a-) read by both
    # models, scored on the windows within one side, in the report
    score = json.loads((out / "showcase" / "score.json").read_text())
    assert [s["system"] for s in score["truth"]["sides"]] == ["a0a0a0", "a-a-a-"]
    for task in ("tilt_system", "tilt_angles"):
        t = score["tasks"][task]
        assert t["windows_by_side"]["substrate"] > 0 and t["windows_by_side"]["film"] > 0
        assert 0 < t["scored"] < t["windows"]  # the windows across the interface are not
    assert 0 <= score["tasks"]["tilt_system"]["accuracy"] <= 1
    assert np.all(np.isfinite(score["tasks"]["tilt_angles"]["mae_deg"]))
    assert (out / "plots" / "showcase" / "maps.png").stat().st_size > 20000
    assert "interface image" in (out / "logs" / "showcase" / "image.log").read_text()
    report = tmp_path / "report.html"
    rep = subprocess.run(cmd + ["--report", str(report)], cwd=ROOT, capture_output=True,
                         text=True, env=env, timeout=600)
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = report.read_text()
    assert "maps.png" in html and "Showcase" in html
    again = subprocess.run(cmd + ["-n"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert "Nothing to be done" in again.stdout + again.stderr

    # tilt maps of an image of two systems side by side (a0a0a0 | a-a-a-, each 3 x 2
    # zone cells of a simulated image) through the Snakemake predict rule
    a = abf[flat[0]]
    b = abf[np.flatnonzero(systems == tilted)[0]]
    image = np.concatenate([np.tile(a, (3, 2)), np.tile(b, (3, 2))], axis=0)  # (x, y)
    data = tmp_path / "two_systems.npy"
    np.save(data, image.T)  # rows = y, as a microscope writes it
    base = cmd[:-2]
    for task in ("tilt_system", "tilt_angles"):
        p = subprocess.run(base + ["--config", f"output_dir={out}", f"predict_input={data}",
                                   f"predict={{scan_step_A: 0.49, task: {task}}}",
                                   "--", "predict"],
                           cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
        pred = out / "predictions" / f"two_systems-{task}-all"
        res = json.loads((pred / "predictions.json").read_text())
        # 96 x 44 pixels of 0.488 x 0.502 Å at 0.49 Å: 96 x 43, windows every half cell
        assert res["window_grid"] == [11, 2] and len(res["predicted"]) == 22
        assert res["file_pixel_A"] == [0.49, 0.49]
        assert (pred / "map.png").stat().st_size > 5000
    assert np.asarray(res["predicted"]).shape == (22, 3)
    # a coarser image is refused before the model runs, and nothing is written
    coarse = tmp_path / "coarse.npy"
    np.save(coarse, image.T)
    bad = subprocess.run(base + ["--config", f"output_dir={out}", f"predict_input={coarse}",
                                 "predict={scan_step_A: 0.6}", "--", "predict"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode != 0
    assert "is coarser than the model's" in bad.stdout + bad.stderr
    assert not (out / "predictions" / "coarse-tilt_system-all").exists()
