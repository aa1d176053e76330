"""PRISM (abTEM SMatrix) as the 4D-STEM forward model: exact at interpolation
1, a bounded approximation above, refused where it cannot apply (real abTEM
runs on tiny cases; the error at campaign scale is benchmarks/prism.py)."""

import numpy as np
import pytest
import zarr

from cbedflow.campaigns.lao_sto_cbed.structures import (
    InterfaceGeometry,
    StructureSpec,
    build_series,
    build_structure,
)
from cbedflow.forward.cbed4d import (
    ScanSettings,
    SimulationConfigError,
    SimulationSettings,
    simulate_unit,
)
from cbedflow.forward.perturb import Perturbation, unit_perturbation

from conftest import SIGMAS

GEOM = InterfaceGeometry(n_substrate=1, n_film=2, y_repeats=4)  # square 15.62 Å cell
FLAT = StructureSpec("step-0000", "step", 0, 0.0, 1)
QUIET = {"progress": lambda m: None}


def _settings(prism, **kw):
    kw = {"sigmas_A": SIGMAS, "sampling_A": 0.1, "detector_max_angle_mrad": 40.0,
          "scan": ScanSettings(0.0, 1.0, 3, 2), **kw}
    return SimulationSettings(prism_interpolation=prism, **kw)


def _read(path):
    g = zarr.open_group(str(path), mode="r")
    return g["cbed"][...], g["haadf"][...], dict(g.attrs)


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """One 8 Å unit (two configurations) by multislice and by PRISM at
    interpolation 1 and 2, on the same 160 x 160 grid."""
    tmp = tmp_path_factory.mktemp("prism")
    atoms = build_structure(FLAT, GEOM, 8.0)
    out = {}
    for name, f in (("multislice", None), ("prism1", 1), ("prism2", 2)):
        simulate_unit(atoms, _settings(f), [5, 6], tmp / f"{name}.zarr", **QUIET)
        out[name] = _read(tmp / f"{name}.zarr")
    return out


def test_grid_is_a_multiple_of_the_interpolation():
    atoms = build_structure(FLAT, GEOM, 8.0)
    assert _settings(None).gpts(atoms) == (160, 160)  # 157 rounded up to 7-smooth
    for f in (2, 3, 4):
        g = _settings(f).gpts(atoms)
        assert all(n % f == 0 for n in g) and g[0] >= 157


def test_interpolation_1_is_multislice(units):
    ms, ms_ring, ms_attrs = units["multislice"]
    p1, p1_ring, p1_attrs = units["prism1"]
    assert p1_attrs["gpts"] == ms_attrs["gpts"] and p1.shape == ms.shape
    np.testing.assert_allclose(p1, ms, rtol=1e-3, atol=1e-5 * ms.max())
    np.testing.assert_allclose(p1_ring, ms_ring, rtol=1e-3, atol=1e-6)
    assert p1_attrs["settings"]["prism_interpolation"] == 1


def test_interpolation_2_is_close_but_not_equal(units):
    """A window of half the cell (7.8 Å) cuts the probe's tails: the patterns
    change by a few per cent, the scattered fractions keep their sum."""
    ms, ms_ring, _ = units["multislice"]
    p2, p2_ring, _ = units["prism2"]
    rel = np.linalg.norm(p2 - ms) / np.linalg.norm(ms)
    assert 1e-3 < rel < 0.3
    np.testing.assert_allclose(p2.sum(axis=(-2, -1)), ms.sum(axis=(-2, -1)), rtol=0.02)
    ring_rel = np.linalg.norm(p2_ring - ms_ring) / np.linalg.norm(ms_ring)
    print(f"interpolation 2, 7.8 Å window: patterns {rel:.3f}, HAADF {ring_rel:.3f} rel. L2")
    assert ring_rel < 0.1


def test_prism_refuses_exit_planes(tmp_path):
    """abTEM 1.0.11 cannot build an S-matrix with exit planes (its eager build
    fails on the extra axis, the lazy one on its metadata): refused in one line."""
    frames = build_series(StructureSpec("diffuse-0000", "diffuse", -1, 0.5, 3), GEOM,
                          [8.0, 16.0])
    with pytest.raises(SimulationConfigError, match=r"exit planes\) with PRISM.*"
                                                    r"exit_planes: false"):
        simulate_unit(frames[-1], _settings(2), [1], tmp_path / "s.zarr",
                      series=frames[:-1], **QUIET)
    assert not (tmp_path / "s.zarr").exists()


def test_prism_refuses_a_mistilt_before_any_work(tmp_path):
    atoms = build_structure(FLAT, GEOM, 8.0)
    up = unit_perturbation(Perturbation(tilt_mrad=2.0), 1, 0, 1)
    with pytest.raises(SimulationConfigError, match=r"mistilt of 2 mrad with PRISM.*"
                                                    r"max_tilt_mrad: 0"):
        simulate_unit(atoms, _settings(2), [1], tmp_path / "x.zarr", perturbation=up, **QUIET)
    assert not (tmp_path / "x.zarr").exists()


def test_prism_defocus_matches_multislice_defocus(tmp_path):
    """A drawn defocus reaches the PRISM probe (through abTEM's CTF) as it
    reaches the multislice probe: interpolation 1 agrees with multislice."""
    atoms = build_structure(FLAT, GEOM, 8.0)
    up = unit_perturbation(Perturbation(defocus_A=40.0, cs_mm=0.005), 1, 0, 1)
    got = {}
    for name, f in (("ms", None), ("p1", 1)):
        s = _settings(f, scan=ScanSettings(0.0, 1.0, 2, 1))
        simulate_unit(atoms, s, [3], tmp_path / f"{name}.zarr", perturbation=up, **QUIET)
        got[name] = _read(tmp_path / f"{name}.zarr")[0]
    simulate_unit(atoms, _settings(1, scan=ScanSettings(0.0, 1.0, 2, 1)), [3],
                  tmp_path / "focused.zarr", **QUIET)
    np.testing.assert_allclose(got["p1"], got["ms"], rtol=1e-3, atol=1e-5 * got["ms"].max())
    focused = _read(tmp_path / "focused.zarr")[0]
    assert np.linalg.norm(focused - got["p1"]) > 0.05 * np.linalg.norm(focused)


# -- config: checked before any work, hashed as absent while off ----------------

def _config(**sim):
    from cbedflow.config import validate

    return validate({"structures": {"per_class": 1, "thicknesses_A": [39.0]},
                     "simulation": {"exit_planes": False, **sim}})


def test_config_refuses_prism_where_it_cannot_apply():
    from cbedflow.config import ConfigError, validate

    # default geometry: 5 cells = 19.5 Å square, so interpolation 2 is a 9.8 Å window
    with pytest.raises(ConfigError, match=r"prism_interpolation': value 2 .*19.52 x 19.52 Å "
                                          r"cell: probe window 9.76 Å < simulation.prism_min_"
                                          r"window_A=20.0 Å .*valid: null \(multislice\): the "
                                          r"cell is narrower than the bound"):
        _config(prism_interpolation=2)
    assert _config(prism_interpolation=1, prism_min_window_A=15.0)["simulation"][
        "prism_interpolation"] == 1
    assert _config(prism_interpolation=2, prism_min_window_A=9.0)["simulation"][
        "prism_interpolation"] == 2
    # the probe spreads through a thick sample: 7 x 20 mrad x 78 Å = 10.92 Å > 9.76 Å
    from cbedflow.config import validate as _validate

    with pytest.raises(ConfigError, match=r"window 9.76 Å < prism_spread_factor=7.0 x 20 mrad "
                                          r"x 78 Å = 10.92 Å.*valid: <= 1"):
        _validate({"structures": {"per_class": 1, "thicknesses_A": [78.0]},
                   "simulation": {"exit_planes": False, "prism_interpolation": 2,
                                  "prism_min_window_A": 9.0}})
    with pytest.raises(ConfigError, match=r"max_tilt_mrad': value 2.0 cannot be simulated with "
                                          r"PRISM.*valid: 0"):
        _config(prism_interpolation=1, prism_min_window_A=15.0,
                perturbations={"enabled": True, "max_tilt_mrad": 2.0})
    with pytest.raises(ConfigError, match=r"exit-plane thickness series.*exit_planes: false"):
        validate({"structures": {"thicknesses_A": [39.0, 78.0]},
                  "simulation": {"exit_planes": True, "prism_interpolation": 1,
                                 "prism_min_window_A": 15.0}})
    with pytest.raises(ConfigError, match="prism_interpolation"):
        _config(prism_interpolation=0)


def test_prism_off_hashes_as_absent_and_on_is_another_unit():
    from cbedflow.campaigns.lao_sto_cbed import LaoStoCbed

    absent = _config()
    assert absent["simulation"]["prism_interpolation"] is None  # the schema default
    stripped = {**absent, "simulation": {k: v for k, v in absent["simulation"].items()
                                         if not k.startswith("prism_")}}
    key = LaoStoCbed(absent).unit_key("step-0000", "t39")
    assert LaoStoCbed(stripped).unit_key("step-0000", "t39") == key
    loose = _config(prism_min_window_A=5.0, prism_spread_factor=1.0)  # bounds change no unit
    assert LaoStoCbed(loose).unit_key("step-0000", "t39") == key
    on = _config(prism_interpolation=1, prism_min_window_A=15.0)
    assert LaoStoCbed(on).unit_key("step-0000", "t39") != key
