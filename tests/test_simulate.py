"""Physics checks of the abTEM simulation on tiny cases (real abTEM runs)."""

import numpy as np
import pytest
import zarr

from cbedflow.campaigns.lao_sto_cbed.analysis import dark_field, virtual_detector
from cbedflow.forward.cbed4d import (
    ScanSettings,
    SimulationConfigError,
    SimulationSettings,
    check_fft_threading,
    simulate_unit,
    smooth_size,
    unit_seeds,
)
from cbedflow.campaigns.lao_sto_cbed.structures import InterfaceGeometry, StructureSpec, build_structure

from conftest import SIGMAS

GEOM = InterfaceGeometry(n_substrate=1, n_film=2, y_repeats=4)  # square 15.62 Å cell
FLAT = StructureSpec("step-0000", "step", 0, 0.0, 1)


def _run(tmp_path, name, thickness_A, settings, seeds=(11,)):
    atoms = build_structure(FLAT, GEOM, thickness_A)
    out = tmp_path / f"{name}.zarr"
    simulate_unit(atoms, settings, list(seeds), out, progress=lambda m: None)
    g = zarr.open_group(str(out), mode="r")
    return g["cbed"][...], {**g.attrs, "haadf": g["haadf"][...]}


# scan from one cell into the substrate to 1.5 cells into the film, a/4 steps
COLUMN_SCAN = ScanSettings(start_cells=-1.0, extent_cells=2.5, positions_x=11, positions_y=4)


@pytest.fixture(scope="module")
def thin(tmp_path_factory):
    s = SimulationSettings(sigmas_A=SIGMAS, detector_max_angle_mrad=95.0, scan=COLUMN_SCAN)
    return _run(tmp_path_factory.mktemp("thin"), "thin", 8.0, s)


def test_total_intensity_thin_sample(thin):
    cbed, attrs = thin
    total = cbed.sum(axis=(-2, -1))
    assert np.all(total <= 1.0 + 1e-4)
    assert np.all(total > 0.9)
    assert cbed.dtype == np.float32
    assert attrs["angular_sampling_mrad"][0] == pytest.approx(attrs["angular_sampling_mrad"][1])


def test_dark_field_shows_a_sites_brighter_than_b_sites(thin):
    cbed, attrs = thin
    df = dark_field(cbed, attrs["angular_sampling_mrad"], semiangle_mrad=20.0)
    # x index j -> x0 + (j - 4) a/4 ; y index 0 -> A columns, 2 -> B columns
    sr, ti_sub, ti_term = df[2, 0], df[0, 2], df[4, 2]
    la1, la2, al = df[6, 0], df[10, 0], df[8, 2]
    assert min(la1, la2) > max(sr, ti_sub, ti_term, al)  # La brightest
    assert sr > max(ti_sub, ti_term, al)  # A-site Sr beats every B site
    assert min(la1, la2) > sr  # La (Z=57) brighter than Sr (Z=38)
    # columns are brighter than the empty channels between them
    assert df[1, 1] < min(sr, ti_sub)


def test_thickness_changes_patterns(tmp_path):
    s = SimulationSettings(sigmas_A=SIGMAS, scan=ScanSettings(0.0, 1.0, 3, 2))
    a, _ = _run(tmp_path, "t8", 8.0, s)
    b, _ = _run(tmp_path, "t24", 24.0, s)
    assert a.shape == b.shape
    rel = np.abs(a - b).sum() / np.abs(a).sum()
    assert rel > 0.1
    ha = virtual_detector(a, [1, 1], 25, 30, reduce="sum")  # pixels, just a ring
    assert not np.allclose(ha, virtual_detector(b, [1, 1], 25, 30, reduce="sum"))


def test_same_seed_identical_other_seed_differs(tmp_path):
    s = SimulationSettings(sigmas_A=SIGMAS, scan=ScanSettings(0.0, 1.0, 3, 2))
    a, attrs = _run(tmp_path, "a", 8.0, s, seeds=(5, 6))
    b, _ = _run(tmp_path, "b", 8.0, s, seeds=(5, 6))
    c, _ = _run(tmp_path, "c", 8.0, s, seeds=(5, 7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert attrs["config_seeds"] == [5, 6] and attrs["num_configs"] == 2


def test_unit_seeds_stable_under_rebatching():
    one = unit_seeds(1, "step-0001", 10, 0, 4)
    two = unit_seeds(1, "step-0001", 10, 0, 2) + unit_seeds(1, "step-0001", 10, 1, 2)
    assert one == two and len(set(one)) == 4
    assert one != unit_seeds(2, "step-0001", 10, 0, 4)


def test_fft_threads_guard():
    check_fft_threading(1, "threads")
    check_fft_threading(4, "synchronous")
    with pytest.raises(SimulationConfigError, match="fft_threads=2.*'threads'"):
        check_fft_threading(2, "threads")


@pytest.mark.parametrize("n,expected", [(586, 588), (245, 245), (293, 294), (1, 1), (97, 98)])
def test_smooth_size(n, expected):
    assert smooth_size(n) == expected


def test_failed_simulation_leaves_no_output(tmp_path):
    atoms = build_structure(FLAT, GEOM, 8.0)
    bad = SimulationSettings(sigmas_A={"Sr": 0.1})  # abTEM rejects missing elements
    out = tmp_path / "u.zarr"
    with pytest.raises(Exception):
        simulate_unit(atoms, bad, [1], out, progress=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_haadf_ranks_columns_by_atomic_number(thin):
    """The virtual HAADF detector (default 3x the 20 mrad probe semi-angle out
    to the antialiasing cutoff) shows Z contrast: La > Sr (A sites) > Ti, Al
    (B sites) > the empty channels, unlike the 40 mrad patterns' outer ring
    (docs/method.md)."""
    cbed, attrs = thin
    hd = attrs["haadf"]
    assert hd.shape == cbed.shape[:2] and hd.dtype == np.float32
    lo, hi = attrs["haadf_range_mrad"]
    assert lo == pytest.approx(60.0) and hi > 100.0  # 0.08 Å grid: cutoff ~105 mrad
    sr, ti_sub, ti_term = hd[2, 0], hd[0, 2], hd[4, 2]
    la1, la2, al = hd[6, 0], hd[10, 0], hd[8, 2]
    assert min(la1, la2) > sr > max(ti_sub, ti_term, al)
    assert min(ti_sub, ti_term, al) > hd[1, 1]  # a column beats the channel between
    # a fraction of the probe, far below the whole
    assert 0 < hd.min() and hd.max() < 0.2


def test_optimized_path_matches_plain_abtem(tmp_path):
    """simulate_unit (potential built once per configuration, probes propagated
    in blocks, accumulated in memory) against plain abTEM on the
    same tiny case and seeds: FrozenPhonons over all configurations, one scan
    of every position, averaged over configurations."""
    import abtem

    from cbedflow.forward.cbed4d import configure_abtem

    s = SimulationSettings(sigmas_A=SIGMAS, detector_max_angle_mrad=40.0,
                           scan=ScanSettings(extent_cells=1.0, positions_x=3, positions_y=2))
    seeds = [5, 6]
    ours, attrs = _run(tmp_path, "ours", 8.0, s, seeds)
    configure_abtem(s)
    atoms = build_structure(FLAT, GEOM, 8.0)
    fp = abtem.FrozenPhonons(atoms, num_configs=len(seeds), sigmas=SIGMAS, seed=tuple(seeds))
    pot = abtem.Potential(fp, gpts=s.gpts(atoms), slice_thickness=s.slice_thickness_A,
                          parametrization=s.parametrization, projection="infinite")
    probe = abtem.Probe(energy=s.energy_kV * 1e3, semiangle_cutoff=s.semiangle_mrad)
    pos = s.scan.positions(atoms).reshape(-1, 2)
    m, ring = probe.scan(pot, scan=abtem.CustomScan(pos),
                         detectors=[abtem.PixelatedDetector(max_angle=s.detector_max_angle_mrad),
                                    abtem.AnnularDetector(inner=60.0)],
                         lazy=True).compute(scheduler="synchronous")
    plain = np.asarray(m.array)
    if plain.ndim == 4:  # (configurations, positions, kx, ky)
        plain = plain.mean(axis=0)
    plain = plain.reshape(ours.shape)
    np.testing.assert_allclose(ours, plain, rtol=1e-4, atol=1e-7 * plain.max())
    hd = np.asarray(ring.array)
    hd = (hd.mean(axis=0) if hd.ndim == 2 else hd).reshape(attrs["haadf"].shape)
    np.testing.assert_allclose(attrs["haadf"], hd, rtol=1e-4, atol=1e-7 * hd.max())


def test_exit_planes_equal_separate_runs_without_phonons(tmp_path):
    """One propagation with exit planes records, at each plane, exactly what a
    separate simulation of the thinner cut gives (no phonons, so the two see
    the same atoms)."""
    from cbedflow.campaigns.lao_sto_cbed.structures import build_series

    still = {el: 0.0 for el in SIGMAS}
    s = SimulationSettings(sigmas_A=still, scan=ScanSettings(0.0, 1.0, 3, 2))
    spec = StructureSpec("diffuse-0000", "diffuse", -1, 0.5, 3)
    frames = build_series(spec, GEOM, [8.0, 16.0])
    out = tmp_path / "series.zarr"
    simulate_unit(frames[-1], s, [1], out, series=frames[:-1], progress=lambda m: None)
    g = zarr.open_group(str(out), mode="r")
    series = g["cbed"][...]
    assert series.shape[0] == 2 and g.attrs["dims"][0] == "exit_plane"
    assert g.attrs["exit_thicknesses_A"] == pytest.approx([2 * 3.905, 4 * 3.905])
    assert [lab["thickness_cells"] for lab in g.attrs["plane_labels"]] == [2, 4]
    for i, f in enumerate(frames):
        one = tmp_path / f"t{i}.zarr"
        simulate_unit(f, s, [1], one, progress=lambda m: None)
        sep = zarr.open_group(str(one), mode="r")
        np.testing.assert_allclose(series[i], sep["cbed"][...], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(g["haadf"][i], sep["haadf"][...], rtol=1e-5, atol=1e-9)
    assert np.abs(series[0] - series[1]).sum() > 0.05 * np.abs(series[1]).sum()


def test_exit_planes_refuse_thickness_between_slices():
    from cbedflow.forward.cbed4d import exit_plane_indices

    assert exit_plane_indices([7.81, 15.62], 1.9525, 15.62) == (3, 7)
    with pytest.raises(SimulationConfigError, match="8.0000 Å is not a whole number"):
        exit_plane_indices([8.0, 15.62], 1.9525, 15.62)
    with pytest.raises(SimulationConfigError, match="thickest exit plane"):
        exit_plane_indices([7.81], 1.9525, 15.62)


def test_probe_blocks_do_not_change_the_result(tmp_path, monkeypatch):
    """Blocks of probes that cut across scan rows (a 5-probe budget on a 3 x 2
    scan) give the same patterns as one block of every probe."""
    import cbedflow.forward.cbed4d as sim

    assert sim.probes_per_call(1599, (525, 525), sim.WAVE_BUDGET_BYTES["cpu"]) == 30
    assert sim.probes_per_call(1599, (525, 525), sim.WAVE_BUDGET_BYTES["gpu"]) == 486
    assert sim.probes_per_call(3, (4000, 4000), 1) == 1
    s = SimulationSettings(sigmas_A=SIGMAS, scan=ScanSettings(0.0, 1.0, 3, 2))
    whole, _ = _run(tmp_path, "whole", 8.0, s, seeds=(5,))
    gpts = s.gpts(build_structure(FLAT, GEOM, 8.0))
    monkeypatch.setitem(sim.WAVE_BUDGET_BYTES, "cpu", 5 * 4 * gpts[0] * gpts[1] * 8)
    cut, _ = _run(tmp_path, "cut", 8.0, s, seeds=(5,))
    np.testing.assert_allclose(cut, whole, rtol=1e-5, atol=1e-9)


def test_gpu_device_without_a_gpu_is_refused_before_any_work():
    """device gpu where cupy cannot reach a GPU: one line (simulate-job runs
    this check before its first unit); this machine has neither cupy nor a GPU."""
    import importlib.util

    from cbedflow.forward.cbed4d import SimulationConfigError, check_device

    check_device("cpu")
    assert importlib.util.find_spec("cupy") is None  # the premise of this test
    with pytest.raises(SimulationConfigError, match=r"device 'gpu': cupy cannot use a GPU here "
                                                    r"\(ModuleNotFoundError: .*or device: cpu"):
        check_device("gpu")


def test_cupy_plan_cache_grows_and_never_shrinks(monkeypatch):
    """A unit test of one function with a stand-in for cupy (no GPU here):
    the cache grows to CUPY_FFT_PLANS plans with a bounded work area, unless
    a site set more (or disabled it with 0)."""
    import sys
    import types

    from cbedflow.forward.cbed4d import (
        CUPY_FFT_PLAN_BYTES,
        CUPY_FFT_PLANS,
        size_cupy_plan_cache,
    )

    class Cache:
        def __init__(self, size, memsize):
            self.size, self.memsize = size, memsize

        def get_size(self):
            return self.size

        def set_size(self, n):
            self.size = n

        def get_memsize(self):
            return self.memsize

        def set_memsize(self, n):
            self.memsize = n

    cache = Cache(16, -1)  # CuPy's defaults
    fake = types.SimpleNamespace(fft=types.SimpleNamespace(
        config=types.SimpleNamespace(get_plan_cache=lambda: cache)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert size_cupy_plan_cache() == (CUPY_FFT_PLANS, CUPY_FFT_PLAN_BYTES)
    cache.size, cache.memsize = 1000, 2**34
    assert size_cupy_plan_cache() == (1000, 2**34)
    cache.size = 0  # a site that disabled the cache keeps it disabled
    assert size_cupy_plan_cache()[0] == 0
