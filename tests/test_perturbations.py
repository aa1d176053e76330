"""Perturbations the ideal simulation leaves out (issue #15): off changes
nothing, draws are per structure and seeded, and each effect does what its
physics says (tiny cells, coarse grids, real abTEM runs)."""

import math

import numpy as np
import pytest
import zarr

from cbedflow.campaigns.lao_sto_cbed import LaoStoCbed
from cbedflow.campaigns.lao_sto_cbed.checks import wavelength_A
from cbedflow.campaigns.lao_sto_cbed.samples import (
    ensure_structure,
    simulate_from_file,
)
from cbedflow.campaigns.lao_sto_cbed.structures import (
    InterfaceGeometry,
    StructureSpec,
    build_structure,
)
from cbedflow.collect import collect
from cbedflow.config import ConfigError, config_hash, load, validate
from cbedflow.forward.cbed4d import (
    ScanSettings,
    SimulationSettings,
    perturbed_probe,
    simulate_unit,
)
from cbedflow.forward.perturb import (
    FWHM_PER_SIGMA,
    Perturbation,
    change_thickness,
    draw_perturbation,
    perturbation_config,
    source_offsets_A,
    unit_perturbation,
)

from conftest import SIGMAS

GEOM = InterfaceGeometry(n_substrate=1, n_film=2, y_repeats=4)  # square 15.62 Å cell
ON = {"enabled": True, "defocus_A": [-50.0, 50.0], "cs_mm": [-0.01, 0.01],
      "max_tilt_mrad": 3.0, "source_fwhm_A": [0.4, 0.6], "thickness_fraction": 0.05}
QUIET = dict(progress=lambda m: None)


def _tiny_config(tmp_path, perturbations=None, **sim):
    """A valid campaign config whose units take about a second: 39 Å (the
    thinnest the 11 step classes allow), 0.2 Å sampling, 3 x 1 probes."""
    raw = {"seed": 7, "output_dir": str(tmp_path / "out"),
           "structures": {"per_class": 2, "n_substrate": 1, "n_film": 2,
                          "thicknesses_A": [39.0], "step_classes": [3]},
           "simulation": {"sampling_A": 0.2, "detector_max_angle_mrad": 40,
                          "exit_planes": False,
                          "haadf": {"inner_mrad": 25.0, "outer_mrad": 40.0},
                          "phonons": {"configs": 4, "batch_size": 2},
                          "scan": {"start_cells": 0.0, "extent_cells": 1.0,
                                   "positions_x": 3, "positions_y": 1}, **sim},
           "crop": {"pattern_px": 16, "binning": 1, "window_positions": 3}}
    if perturbations is not None:
        raw["simulation"]["perturbations"] = perturbations
    return validate(raw)


def _unit(config, name, batch, out):
    """Simulate one unit through the campaign path; (cbed, haadf, attrs)."""
    camp = LaoStoCbed(config)
    path = ensure_structure(camp, name)
    simulate_from_file(config, path, "39", batch, out, **QUIET)
    g = zarr.open_group(str(out), mode="r")
    return g["cbed"][...], g["haadf"][...], dict(g.attrs)


# -- off changes nothing -------------------------------------------------------

def test_off_is_bit_identical_and_hashes_as_absent(tmp_path):
    absent = _tiny_config(tmp_path)
    off = _tiny_config(tmp_path, {"enabled": False, "defocus_A": [-50.0, 50.0]})
    assert perturbation_config(absent) is None and perturbation_config(off) is None
    a, ha, attrs_a = _unit(absent, "step-0000", 0, tmp_path / "a.zarr")
    b, hb, attrs_b = _unit(off, "step-0000", 0, tmp_path / "b.zarr")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ha, hb)
    assert attrs_a["labels"] == attrs_b["labels"] and "perturbation" not in attrs_b
    assert not any(k.startswith("perturb_") for k in attrs_b["labels"])
    assert attrs_a["settings"] == attrs_b["settings"]
    assert attrs_a["provenance"]["unit_key"] == attrs_b["provenance"]["unit_key"]
    # switched on, the unit is a different one (and is recomputed)
    on = _tiny_config(tmp_path, ON)
    assert (LaoStoCbed(on).unit_key("step-0000", "t39")
            != LaoStoCbed(off).unit_key("step-0000", "t39"))


def test_existing_configs_keep_their_unit_keys_and_stage_hashes(root):
    """Values computed before perturbations existed (commit 6d8a5a3) and
    before structures.step_model and perturbations.fraction existed (commit
    d2082a8): a finished unit of an existing config is reused, and Snakemake
    sees the same simulation parameters (``hashed_section`` strips the
    switched-off section, the default step model and a fraction of 1)."""
    for name, unit, key, stage in [
            ("config.yaml", ("step-0000", "t39"), "fe3f5aeb8a560741", "d733950c625eefe0"),
            ("reproduce-perturbed-off.yaml", ("step-0000", "t78"), "e6bb836b8eac72cd",
             "49c19163d199570a"),
            ("reproduce-perturbed.yaml", ("step-0000", "t78"), "d27da21eac4a9b65",
             "6fc956eccbe239d6")]:
        c = load(root / "config" / name)
        assert LaoStoCbed(c).unit_key(*unit) == key, name
        camp = LaoStoCbed(c)
        part = {k: camp.hashed_section(k, c[k])
                for k in ("seed", "device", "microscope", "simulation", "structures")}
        assert config_hash(part) == stage, name
        if perturbation_config(c) is None:
            assert len(LaoStoCbed(c).labels) == 5  # no perturb_* labels in the dataset


def test_enabled_with_zero_ranges_matches_off_exactly(tmp_path):
    """The perturbed code path with every effect at zero is the ideal
    microscope (C10 = C30 = 0, tilt (0, 0), zero probe offsets)."""
    atoms = build_structure(StructureSpec("step-0000", "step", 0, 0.0, 1), GEOM, 8.0)
    s = SimulationSettings(sigmas_A=SIGMAS, sampling_A=0.2, detector_max_angle_mrad=40,
                           haadf_mrad=(25.0, 40.0), scan=ScanSettings(0.0, 1.0, 3, 1))
    simulate_unit(atoms, s, [3, 4], tmp_path / "a.zarr", **QUIET)
    up = unit_perturbation(Perturbation(), 2, 0, 2)
    simulate_unit(atoms, s, [3, 4], tmp_path / "b.zarr", perturbation=up, **QUIET)
    a = zarr.open_group(str(tmp_path / "a.zarr"))["cbed"][...]
    b = zarr.open_group(str(tmp_path / "b.zarr"))["cbed"][...]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


# -- draws -------------------------------------------------------------------------

def test_draws_are_seeded_per_structure_and_within_ranges():
    a = draw_perturbation(1, "step-0001", ON)
    assert a == draw_perturbation(1, "step-0001", ON)
    assert a != draw_perturbation(1, "step-0002", ON)
    assert a != draw_perturbation(2, "step-0001", ON)
    draws = [draw_perturbation(3, f"diffuse-{i:04d}", ON) for i in range(200)]
    d = np.array([p.defocus_A for p in draws])
    assert d.min() >= -50 and d.max() <= 50 and d.max() - d.min() > 80
    assert all(0 <= p.tilt_mrad <= 3 and -0.01 <= p.cs_mm <= 0.01 and
               0.4 <= p.source_fwhm_A <= 0.6 and abs(p.thickness_fraction) <= 0.05
               for p in draws)
    dc = {p.thickness_cells(20) for p in draws}
    assert dc == {-1, 0, 1}  # +-5 % of 20 cells
    # switching one effect on does not change the others' draws
    only_defocus = draw_perturbation(1, "step-0001", {"defocus_A": [-50.0, 50.0]})
    assert only_defocus.defocus_A == a.defocus_A and only_defocus.tilt_mrad == 0


def test_batches_share_the_structure_draw(tmp_path):
    """Two phonon batches of one structure: one draw, and the source offsets
    of the four configurations are one set however it is batched."""
    cfg = _tiny_config(tmp_path, ON)
    _, _, a0 = _unit(cfg, "step-0000", 0, tmp_path / "u" / "b0.zarr")
    _, _, a1 = _unit(cfg, "step-0000", 1, tmp_path / "u" / "b1.zarr")
    p0, p1 = a0["perturbation"], a1["perturbation"]
    assert {k: v for k, v in p0.items() if k != "source_offsets_A"} == \
        {k: v for k, v in p1.items() if k != "source_offsets_A"}
    draw = draw_perturbation(7, "step-0000", perturbation_config(cfg))
    whole = source_offsets_A(draw.source_fwhm_A, 4, draw.source_rotation_deg)
    np.testing.assert_allclose(p0["source_offsets_A"] + p1["source_offsets_A"], whole)
    for k in ("perturb_defocus_A", "perturb_tilt_x_mrad", "perturb_thickness_A"):
        assert a0["labels"][k] == a1["labels"][k]
    assert a0["labels"]["perturb_defocus_A"] == pytest.approx(draw.defocus_A)
    # collect carries the draw into the dataset as perturb_* labels
    ds = zarr.open_group(str(collect(LaoStoCbed(cfg), [tmp_path / "u" / "b0.zarr",
                                                        tmp_path / "u" / "b1.zarr"],
                                     tmp_path / "ds.zarr", **QUIET)), mode="r")
    assert ds["perturb_defocus_A"][0] == pytest.approx(draw.defocus_A, rel=1e-6)
    assert ds["perturb_tilt_mrad"][0] == pytest.approx(draw.tilt_mrad, rel=1e-6)
    assert ds["perturb_thickness_A"][0] == pytest.approx(
        (10 + draw.thickness_cells(10)) * 3.905, rel=1e-6)
    assert ds["thickness_A"][0] == pytest.approx(39.05, rel=1e-6)  # nominal
    assert ds["perturb_cs_mm"].attrs["units"] == "mm"
    assert ds.attrs["perturbations"]["max_tilt_mrad"] == 3.0


def test_config_refuses_bad_perturbations(tmp_path):
    with pytest.raises(ConfigError, match=r"defocus_A.*\[50.0, -50.0\].*min <= max"):
        _tiny_config(tmp_path, {**ON, "defocus_A": [50.0, -50.0]})
    with pytest.raises(ConfigError, match=r"source_fwhm_A.*configs >= 3"):
        _tiny_config(tmp_path, ON, phonons={"configs": 2, "batch_size": 2})
    raw = {"structures": {"thicknesses_A": [39.0, 78.0]},
           "simulation": {"exit_planes": True, "perturbations": ON,
                          "phonons": {"configs": 4, "batch_size": 2}}}
    with pytest.raises(ConfigError, match=r"thickness_fraction.*exit_planes: false"):
        validate(raw)
    with pytest.raises(ConfigError, match="max_tilt_mrad"):
        _tiny_config(tmp_path, {**ON, "max_tilt_mrad": -1.0})


# -- physics: one invariant per effect -----------------------------------------------

def _fourier_probe(settings, p, gpts=256, extent=40.0):
    """The real-space probe of ``p`` centred on a gpts^2 grid of ``extent`` Å."""
    probe = perturbed_probe(settings, p)
    probe.grid.gpts = (gpts, gpts)
    probe.grid.extent = (extent, extent)
    wave = probe.build((extent / 2, extent / 2), lazy=False).array
    return np.asarray(wave)


def test_defocus_and_cs_are_the_ctf_phase_with_abtem_signs():
    """The probe's Fourier phase against the aberration function written out
    independently: chi(k) = pi lambda C10 k^2 + pi/2 lambda^3 C30 k^4, with
    C10 = -defocus and C30 = Cs [mm] x 1e7 Å; and the defocus widens the
    probe as <r^2>(f) - <r^2>(0) = lambda^2 f^2 <k^2> (exact for a real
    aperture function, no wrap-around)."""
    s = SimulationSettings()
    lam = wavelength_A(200.0)
    n, L = 256, 40.0
    k = np.fft.fftfreq(n, L / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    k2 = kx ** 2 + ky ** 2
    ref = np.fft.fft2(_fourier_probe(s, Perturbation(), n, L))
    inside = np.abs(ref) > 0.5 * np.abs(ref).max()
    for p in (Perturbation(defocus_A=40.0), Perturbation(cs_mm=0.01),
              Perturbation(defocus_A=-25.0, cs_mm=-0.004)):
        got = np.fft.fft2(_fourier_probe(s, p, n, L)) / np.where(inside, ref, 1)
        c10, c30 = -p.defocus_A, p.cs_mm * 1e7
        chi = np.pi * lam * c10 * k2 + 0.5 * np.pi * lam ** 3 * c30 * k2 ** 2
        assert np.abs(got[inside] - np.exp(-1j * chi[inside])).max() < 1e-3, p
    # probe width: the second moment of the real-space intensity
    x = (np.arange(n) - n / 2) * L / n
    X, Y = np.meshgrid(x, x, indexing="ij")

    def r2(p):
        w = np.abs(_fourier_probe(s, p, n, L)) ** 2
        return float((w * (X ** 2 + Y ** 2)).sum() / w.sum())

    a2 = np.abs(ref) ** 2
    k2_mean = float((a2 * k2).sum() / a2.sum())
    for f in (30.0, 60.0):
        want = lam ** 2 * f ** 2 * k2_mean
        assert r2(Perturbation(defocus_A=f)) - r2(Perturbation()) == pytest.approx(want, rel=0.03)


def test_mistilt_is_a_sheared_specimen(tmp_path):
    """abTEM's probe tilt (a phase on the Fresnel propagator) equals the
    untilted probe through the specimen sheared by -z tan(theta) slice by
    slice: the patterns agree far better than with the unsheared or the
    opposite shear. The bright-field disc stays on the axis (the probe is
    not tilted, the specimen is): through vacuum the tilt changes nothing."""
    atoms = build_structure(StructureSpec("step-0000", "step", 0, 0.0, 1), GEOM, 24.0)
    still = {el: 0.0 for el in SIGMAS}  # no phonons: the comparison is exact in z
    s = SimulationSettings(sigmas_A=still, sampling_A=0.15, detector_max_angle_mrad=40,
                           haadf_mrad=(25.0, 40.0), scan=ScanSettings(0.0, 1.0, 3, 1))
    theta = 20.0  # mrad, large so the shear (0.48 Å over 24 Å) is clear
    dz = s.slice_thickness_A

    def run(name, a, perturbation=None):
        simulate_unit(a, s, [1], tmp_path / name, perturbation=perturbation, **QUIET)
        return zarr.open_group(str(tmp_path / name))["cbed"][...].astype(np.float64)

    def sheared(sign):
        a = atoms.copy()
        islice = np.floor(a.positions[:, 2] / dz + 1e-6)
        a.positions[:, 0] += sign * islice * dz * math.tan(theta / 1e3)
        a.wrap()
        return a

    p = Perturbation(tilt_mrad=theta, tilt_azimuth_deg=0.0)
    tilted = run("tilt.zarr", atoms, unit_perturbation(p, 1, 0, 1))
    flat = run("flat.zarr", atoms)
    minus = run("minus.zarr", sheared(-1.0))
    plus = run("plus.zarr", sheared(+1.0))

    def rel(a, b):
        return float(np.abs(a - b).sum() / np.abs(b).sum())

    assert rel(tilted, minus) < 0.2 * rel(tilted, flat)
    assert rel(tilted, minus) < 0.2 * rel(tilted, plus)
    # near-vacuum (one H atom): the pattern is the untilted one, where a
    # tilted beam would have moved the bright-field disc by 20 mrad (12 px)
    from ase import Atoms

    vac = Atoms("H", positions=[[12.0, 12.0, 1.0]], cell=atoms.cell, pbc=True,
                info={"scan_x0_A": 4.0, "unit_cell_A": 3.905})
    sv = SimulationSettings(sigmas_A={"H": 0.0}, sampling_A=0.15, detector_max_angle_mrad=40,
                            haadf_mrad=(25.0, 40.0), scan=ScanSettings(0.0, 1.0, 2, 1))
    simulate_unit(vac, sv, [1], tmp_path / "v0.zarr", **QUIET)
    simulate_unit(vac, sv, [1], tmp_path / "v1.zarr", perturbation=unit_perturbation(p, 1, 0, 1),
                  **QUIET)
    v0 = zarr.open_group(str(tmp_path / "v0.zarr"))["cbed"][...]
    v1 = zarr.open_group(str(tmp_path / "v1.zarr"))["cbed"][...]
    assert theta / zarr.open_group(str(tmp_path / "v1.zarr")).attrs[
        "angular_sampling_mrad"][0] > 10
    assert np.abs(v1 - v0).max() < 1e-4 * v0.max()


def test_source_size_is_the_average_over_displaced_probes(tmp_path):
    """Configuration j's probes displaced by offset j equals, computed
    independently, the crystal translated by -offset j (same phonon seed),
    averaged; and the finite source lowers the HAADF contrast across the
    columns. The offsets are a centred sample of the Gaussian."""
    big = source_offsets_A(0.5, 4096, 17.0)
    sigma = 0.5 / FWHM_PER_SIGMA
    assert np.abs(big.mean(axis=0)).max() < 1e-12
    np.testing.assert_allclose(np.cov(big.T), sigma ** 2 * np.eye(2), atol=0.03 * sigma ** 2)
    atoms = build_structure(StructureSpec("step-0000", "step", 0, 0.0, 1), GEOM, 8.0)
    s = SimulationSettings(sigmas_A=SIGMAS, sampling_A=0.1, detector_max_angle_mrad=40,
                           haadf_mrad=(45.0, 100.0),
                           scan=ScanSettings(-1.0, 1.0, 9, 1))  # one cell, a/8 steps
    seeds = [21, 22, 23, 24]
    p = Perturbation(source_fwhm_A=1.0, source_rotation_deg=40.0)
    up = unit_perturbation(p, 4, 0, 4)
    simulate_unit(atoms, s, seeds, tmp_path / "src.zarr", perturbation=up, **QUIET)
    g = zarr.open_group(str(tmp_path / "src.zarr"))
    got, got_haadf = g["cbed"][...], g["haadf"][...]
    ref, ref_haadf = 0.0, 0.0
    for j, (seed, off) in enumerate(zip(seeds, up.source_offsets_A)):
        a = atoms.copy()
        a.positions[:, :2] -= np.asarray(off)
        a.wrap()
        out = tmp_path / f"shift{j}.zarr"
        simulate_unit(a, s, [seed], out, **QUIET)
        ref = ref + zarr.open_group(str(out))["cbed"][...] / 4
        ref_haadf = ref_haadf + zarr.open_group(str(out))["haadf"][...] / 4
    assert np.abs(got - ref).sum() / np.abs(ref).sum() < 2e-3
    simulate_unit(atoms, s, seeds, tmp_path / "point.zarr", **QUIET)
    point = zarr.open_group(str(tmp_path / "point.zarr"))["haadf"][...]
    # scan over one cell along the Sr-O / Ti-O-O plane sequence: the source
    # flattens the profile
    assert np.ptp(got_haadf) < 0.8 * np.ptp(point)


def test_thickness_error_changes_the_exit_surface_only():
    a = 3.905
    for spec in (StructureSpec("step-0005", "step", 5, 0.0, 1),
                 StructureSpec("step-0010", "step", 10, 0.0, 1),
                 StructureSpec("diffuse-0001", "diffuse", -1, 0.3, 4)):
        atoms = build_structure(spec, GEOM, 39.0)
        n, per_cell = 10, len(atoms) // 10
        for dc in (-2, -1, 1, 2):
            t = change_thickness(atoms, dc)
            assert t.cell[2, 2] == pytest.approx((n + dc) * a)
            assert len(t) == len(atoms) + dc * per_cell
            assert t.info["step_depth_A"] == atoms.info["step_depth_A"]
            assert t.info["thickness_A"] == atoms.info["thickness_A"]  # nominal label
            keep = min(n, n + dc) - (0 if dc < 0 else 1)
            lo = atoms[atoms.positions[:, 2] < keep * a - 1e-6]
            lo_t = t[t.positions[:, 2] < keep * a - 1e-6]
            assert lo.get_chemical_symbols() == lo_t.get_chemical_symbols()
            np.testing.assert_allclose(lo.positions, lo_t.positions)
            if dc > 0:  # the repeated cells are the last cell, moved along z
                last = atoms[atoms.positions[:, 2] >= (n - 1) * a - 1e-6]
                new = t[t.positions[:, 2] >= (n + dc - 1) * a - 1e-6]
                assert sorted(last.get_chemical_symbols()) == sorted(new.get_chemical_symbols())
                np.testing.assert_allclose(np.sort(new.positions[:, 2]),
                                           np.sort(last.positions[:, 2]) + dc * a)
    with pytest.raises(ValueError, match="leaves no sample"):
        change_thickness(build_structure(StructureSpec("s", "step", 0, 0.0, 1), GEOM, 39.0), -10)


def test_thickness_error_reaches_the_simulated_cell(tmp_path):
    """The unit's potential is built on the changed cell: its recorded
    realised thickness is nominal + drawn cells, and the patterns differ from
    the nominal sample's."""
    cfg = _tiny_config(tmp_path, {"enabled": True, "thickness_fraction": 0.3})
    name = next(n for n in (f"step-{i:04d}" for i in range(2))
                if draw_perturbation(7, n, perturbation_config(cfg)).thickness_cells(10) != 0)
    dc = draw_perturbation(7, name, perturbation_config(cfg)).thickness_cells(10)
    cb, _, attrs = _unit(cfg, name, 0, tmp_path / "t.zarr")
    assert attrs["labels"]["perturb_thickness_cells"] == dc
    assert attrs["labels"]["perturb_thickness_A"] == pytest.approx((10 + dc) * 3.905)
    assert attrs["labels"]["thickness_A"] == pytest.approx(39.05)
    nominal, _, _ = _unit(_tiny_config(tmp_path), name, 0, tmp_path / "n.zarr")
    assert np.abs(cb - nominal).sum() / np.abs(nominal).sum() > 0.01


# -- a perturbed share of the structures (fraction < 1) -------------------------------

def test_fraction_keeps_the_draw_of_every_perturbed_structure():
    half = {**ON, "fraction": 0.5}
    names = [f"step-{i:04d}" for i in range(300)]
    draws = [draw_perturbation(11, n, half) for n in names]
    applied = np.array([p.applied for p in draws])
    assert 0.4 < applied.mean() < 0.6  # binomial(300, 0.5): 5 sigma = 0.14
    for n, p in zip(names, draws):
        if p.applied:  # the draw it has when every structure is perturbed
            assert p == draw_perturbation(11, n, ON)
        else:
            assert p == Perturbation(applied=False)
            assert p.labels(20, 3.905)["perturbed"] == 0
            assert p.labels(20, 3.905)["perturb_thickness_A"] == pytest.approx(20 * 3.905)
    assert draw_perturbation(11, names[0], ON).labels(20, 3.905)["perturbed"] == 1
    # a larger fraction perturbs a superset
    more = np.array([draw_perturbation(11, n, {**ON, "fraction": 0.8}).applied for n in names])
    assert np.all(more[applied]) and more.sum() > applied.sum()


def test_fraction_one_hashes_as_before_and_an_ideal_structure_runs_the_ideal_path(tmp_path):
    on = _tiny_config(tmp_path, ON)
    assert (LaoStoCbed(_tiny_config(tmp_path, {**ON, "fraction": 1.0})).unit_key(
        "step-0000", "t39") == LaoStoCbed(on).unit_key("step-0000", "t39"))
    half = _tiny_config(tmp_path, {**ON, "fraction": 0.5})
    assert LaoStoCbed(half).unit_key("step-0000", "t39") != LaoStoCbed(on).unit_key(
        "step-0000", "t39")
    camp = LaoStoCbed(half)
    ideal = next(s.name for s in camp.structures
                 if not draw_perturbation(7, s.name, perturbation_config(half)).applied)
    a, ha, attrs = _unit(half, ideal, 0, tmp_path / "ideal.zarr")
    b, hb, _ = _unit(_tiny_config(tmp_path), ideal, 0, tmp_path / "absent.zarr")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ha, hb)
    assert attrs["labels"]["perturbed"] == 0 and "perturbation" not in attrs
    assert attrs["labels"]["perturb_defocus_A"] == 0.0


def test_ideal_tasks_need_a_perturbed_share(tmp_path):
    for pert in (None, ON):  # off, or every structure perturbed
        raw = {"seed": 7, "tasks": ["step_vs_intermixing_ideal"],
               "structures": {"thicknesses_A": [39.0]},
               "simulation": {"phonons": {"configs": 4, "batch_size": 2}}}
        if pert:
            raw["simulation"]["perturbations"] = pert
        with pytest.raises(ConfigError, match=r"tasks.*step_vs_intermixing_ideal.*fraction < 1"):
            validate(raw)
    with pytest.raises(ConfigError, match=r"tasks.*rough_vs_diffuse_drawn.*perturbations are off"):
        validate({"seed": 7, "tasks": ["rough_vs_diffuse_drawn"],
                  "structures": {"thicknesses_A": [39.0]}})
    camp = LaoStoCbed(_tiny_config(tmp_path, {**ON, "fraction": 0.5}))
    ideal, drawn = (camp.tasks[f"step_vs_intermixing_{k}"] for k in ("ideal", "drawn"))
    assert ideal.train_only == ("perturbed", 0) and drawn.train_only is None
    assert ideal.exclude == drawn.exclude == camp.tasks["step_vs_intermixing"].exclude
    assert ideal.also_by == drawn.also_by == ("perturbed",)
    assert "perturbed" in [lab.name for lab in camp.labels]
    off = LaoStoCbed(_tiny_config(tmp_path))
    assert "perturbed" not in [lab.name for lab in off.labels]


@pytest.mark.slow
def test_a_perturbed_share_through_snakemake(tmp_path):
    """simulation.perturbations.fraction 0.5 through the whole workflow (real
    abTEM units, 2-rank Horovod training, coarse and short): the dataset holds
    ideal and perturbed structures, the `_ideal` model trains on the ideal
    ones only, the `_drawn` one on both, and both are scored on both
    (accuracy_by_perturbed in their metrics and in summary.json)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from conftest import train_env

    root = Path(__file__).resolve().parents[1]
    cfg = {"seed": 7, "output_dir": "results",
           "structures": {"per_class": 16, "n_substrate": 1, "n_film": 2,
                          "step_model": "conformal", "thicknesses_A": [39.0],
                          "step_classes": [3, 4, 5, 6, 7, 8, 9, 10]},
           "simulation": {"sampling_A": 0.2, "detector_max_angle_mrad": 40,
                          "exit_planes": False,
                          "haadf": {"inner_mrad": 25.0, "outer_mrad": 40.0},
                          "phonons": {"configs": 4, "batch_size": 4},
                          "scan": {"start_cells": 0.0, "extent_cells": 1.0,
                                   "positions_x": 3, "positions_y": 1},
                          "perturbations": {**ON, "fraction": 0.5}},
           "tasks": ["step_vs_intermixing_drawn", "step_vs_intermixing_ideal"],
           "crop": {"pattern_px": 16, "binning": 2, "window_positions": 3},
           "split": {"validation": 0.2, "test": 0.3},
           "augment": {"copies": 1},
           "train": {"epochs": 2, "conv_filters": [4, 4], "dense_units": 8},
           "evaluate": {"mc_dropout_samples": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               CBEDFLOW_TRAIN_ENV=str(train_env()))
    r = subprocess.run([str(bindir / "snakemake"), "-s", str(root / "Snakefile"), "--profile",
                        str(root / "profiles" / "local"), "--configfile", "c.yaml"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = tmp_path / "results"
    ds = zarr.open_group(str(res / "dataset.zarr"), mode="r")
    perturbed = ds["perturbed"][...]
    assert set(perturbed.tolist()) == {0, 1}
    assert np.all(ds["perturb_defocus_A"][...][perturbed == 0] == 0)
    assert np.all(ds["perturb_source_fwhm_A"][...][perturbed == 1] >= 0.4)
    for task, train_values in (("step_vs_intermixing_ideal", {0}),
                               ("step_vs_intermixing_drawn", {0, 1})):
        tr = zarr.open_group(str(res / "tasks" / task / "train.zarr"), mode="r")
        te = zarr.open_group(str(res / "tasks" / task / "test.zarr"), mode="r")
        assert set(tr["perturbed"][...].tolist()) == train_values, task
        assert set(te["perturbed"][...].tolist()) == {0, 1}, task
        m = json.loads((res / "evaluation" / task / "all" / "metrics.json").read_text())
        by = m["accuracy_by_perturbed"]
        assert set(by) == {"0", "1"} and all(0 <= v <= 1 for v in by.values()), by
        ok = np.asarray(m["confusion_matrix"]).trace() / m["n_test"]
        n1 = int(te["perturbed"][...].sum())  # the overall accuracy is the weighted mean
        assert ok == pytest.approx((by["1"] * n1 + by["0"] * (m["n_test"] - n1)) / m["n_test"])
    # both models saw the same test structures
    a, b = (zarr.open_group(str(res / "tasks" / t / "test.zarr"), mode="r")
            for t in ("step_vs_intermixing_ideal", "step_vs_intermixing_drawn"))
    np.testing.assert_array_equal(a["structure_index"][...], b["structure_index"][...])
    summary = json.loads((res / "summary.json").read_text())
    assert "accuracy_by_perturbed" in json.dumps(summary)
