"""Invariants of the LAO/STO structures."""

from collections import Counter

import numpy as np
import pytest
from ase.geometry import get_distances

from cbedflow.campaigns.lao_sto_cbed.structures import (
    A_STO,
    InterfaceGeometry,
    StructureSpec,
    build_interface,
    build_structure,
    campaign_structures,
    film_b_planes_x,
    step_depth_cells,
)

GEOM = InterfaceGeometry(n_substrate=2, n_film=3, y_repeats=2)
NZ = 10


def _plane_x(atoms):
    return np.round(atoms.positions[:, 0] / (A_STO / 2)).astype(int)


def _cations_by_plane(atoms, z_cell=None):
    """{plane index: set of cation symbols} (optionally for one z cell)."""
    out = {}
    sym = atoms.get_chemical_symbols()
    z = np.floor(atoms.positions[:, 2] / A_STO + 1e-6).astype(int)
    for i, p in enumerate(_plane_x(atoms)):
        if sym[i] == "O" or (z_cell is not None and z[i] != z_cell):
            continue
        out.setdefault(p, set()).add(sym[i])
    return out


def test_flat_composition_counts():
    atoms = build_interface(GEOM, NZ)
    c = Counter(atoms.get_chemical_symbols())
    cols = GEOM.y_repeats * NZ  # atoms of one species per plane
    # substrate: n_sub+1 TiO2, n_sub SrO, plus the SrO cap; film: n_film LaO + AlO2
    assert c["Ti"] == (GEOM.n_substrate + 1) * cols
    assert c["Sr"] == (GEOM.n_substrate + 1) * cols
    assert c["La"] == GEOM.n_film * cols
    assert c["Al"] == GEOM.n_film * cols
    n_a = c["Sr"] + c["La"]
    n_b = c["Ti"] + c["Al"]
    assert c["O"] == n_a + 2 * n_b


def test_planes_alternate_across_periodic_boundary():
    atoms = build_interface(GEOM, NZ)
    planes = _cations_by_plane(atoms)
    n_planes = 2 * GEOM.cells_x
    assert sorted(planes) == list(range(n_planes))
    kinds = ["A" if planes[p] & {"Sr", "La"} else "B" for p in range(n_planes)]
    # B A B A ... and the last plane (cap, A) wraps onto plane 0 (B)
    assert all(kinds[i] != kinds[(i + 1) % n_planes] for i in range(n_planes))
    assert planes[0] == {"Ti"} and planes[n_planes - 1] == {"Sr"}
    term = 2 * GEOM.n_substrate
    assert planes[term] == {"Ti"} and planes[term + 1] == {"La"}
    assert planes[n_planes - 2] == {"Al"}  # LAO terminated by AlO2


@pytest.mark.parametrize("geom", [GEOM, InterfaceGeometry(1, 2, 4)])
def test_minimum_distance_with_periodicity(geom):
    atoms = build_interface(geom, NZ, step_cells=4)
    _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    d = d[np.triu_indices(len(atoms), 1)]
    assert d.min() == pytest.approx(A_STO / 2, rel=1e-6)  # B-O bond, nothing closer


@pytest.mark.parametrize("k", range(11))
def test_step_depth(k):
    spec = StructureSpec("step-0000", "step", k, 0.0, 1)
    atoms = build_structure(spec, GEOM, 39.0)
    d = step_depth_cells(k, NZ)
    assert atoms.info["step_depth_A"] == pytest.approx(d * A_STO)
    assert atoms.info["step_k"] == k and atoms.info["rough"] == 1
    first_film = 2 * GEOM.n_substrate + 1
    for z in range(NZ):
        planes = _cations_by_plane(atoms, z_cell=z)
        expected = {"Sr"} if z < d else {"La"}
        assert planes[first_film] == expected, (k, z)
        assert planes[first_film + 1] == ({"Ti"} if z < d else {"Al"})
        assert planes[first_film + 2] == {"La"}  # film above the step everywhere


def test_step_classes_distinct_for_ten_cells():
    assert len({step_depth_cells(k, 10) for k in range(11)}) == 11
    assert step_depth_cells(0, 26) == 0 and step_depth_cells(10, 26) == 26


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.35, 1.0])
def test_intermixing_fraction(fraction):
    spec = StructureSpec("diffuse-0000", "diffuse", -1, fraction, 7)
    atoms = build_structure(spec, GEOM, 39.0)
    sym = np.array(atoms.get_chemical_symbols())
    x = atoms.positions[:, 0]
    first, second = film_b_planes_x(GEOM)[:2]
    on_first = np.isclose(x, first) & np.isin(sym, ["Al", "Ti"])
    n_sites = on_first.sum()
    n_ti = np.sum(on_first & (sym == "Ti"))
    assert n_ti == round(fraction * n_sites)
    assert atoms.info["intermix_fraction"] == pytest.approx(n_ti / n_sites)
    on_second = np.isclose(x, second)
    assert not np.any(on_second & (sym == "Ti"))  # decay 0: only the first plane
    # composition is conserved: Ti replaces Al one for one
    flat = build_interface(GEOM, NZ)
    assert len(atoms) == len(flat)


def test_intermixing_decay_and_seed():
    spec = StructureSpec("diffuse-0000", "diffuse", -1, 0.5, 7)
    a1 = build_structure(spec, GEOM, 39.0, decay=0.5)
    a2 = build_structure(spec, GEOM, 39.0, decay=0.5)
    a3 = build_structure(StructureSpec("diffuse-0000", "diffuse", -1, 0.5, 8), GEOM, 39.0, decay=0.5)
    assert a1.get_chemical_symbols() == a2.get_chemical_symbols()
    assert a1.get_chemical_symbols() != a3.get_chemical_symbols()
    sym = np.array(a1.get_chemical_symbols())
    second = film_b_planes_x(GEOM)[1]
    n_ti_second = np.sum(np.isclose(a1.positions[:, 0], second) & (sym == "Ti"))
    assert n_ti_second == round(0.25 * GEOM.y_repeats * NZ)


def test_campaign_structures_balanced_and_seeded():
    specs = campaign_structures(22, (0.1, 0.3), seed=3)
    steps = [s for s in specs if s.kind == "step"]
    assert sorted(Counter(s.step_k for s in steps).values()) == [2] * 11
    fr = [s.fraction for s in specs if s.kind == "diffuse"]
    assert all(0.1 <= f <= 0.3 for f in fr) and len(set(fr)) > 1
    assert specs == campaign_structures(22, (0.1, 0.3), seed=3)
    assert specs != campaign_structures(22, (0.1, 0.3), seed=4)


def _atom_set(atoms):
    return sorted(zip(atoms.get_chemical_symbols(),
                      map(tuple, np.round(atoms.positions, 6).tolist())))


@pytest.mark.parametrize("k", [0, 10])
def test_series_of_flat_steps_equals_direct_builds(k):
    from cbedflow.campaigns.lao_sto_cbed.structures import build_series, series_compatible

    spec = StructureSpec("step-0000", "step", k, 0.0, 1)
    assert series_compatible(spec)
    frames = build_series(spec, GEOM, [78.0, 39.0, 59.0])
    assert [f.info["thickness_cells"] for f in frames] == [10, 15, 20]
    for f in frames:
        direct = build_structure(spec, GEOM, f.info["nominal_thickness_A"])
        assert _atom_set(f) == _atom_set(direct)
        assert np.allclose(f.cell, direct.cell)
        assert {k_: f.info[k_] for k_ in direct.info} == direct.info


def test_series_of_diffuse_structure_is_cuts_with_own_labels():
    from cbedflow.forward.cbed4d import check_prefix_series
    from cbedflow.campaigns.lao_sto_cbed.structures import build_series, realised_fractions

    spec = StructureSpec("diffuse-0000", "diffuse", -1, 0.3, 7)
    frames = build_series(spec, GEOM, [39.0, 78.0], decay=0.5)
    check_prefix_series(frames)  # thinner = thickest cut at its thickness
    thin, thick = frames
    assert _atom_set(thick) == _atom_set(build_structure(spec, GEOM, 78.0, decay=0.5))
    assert thin.info["thickness_A"] == pytest.approx(10 * A_STO)
    assert thin.info["rough"] == 0 and thin.info["step_k"] == -1
    # the label is what the cut holds, not the thickest sample's fraction
    assert thin.info["intermix_fraction"] == pytest.approx(realised_fractions(thin, GEOM)[0])
    assert thick.info["intermix_fraction"] == pytest.approx(0.3, abs=0.02)


def test_inner_step_classes_refuse_a_series():
    from cbedflow.forward.cbed4d import SimulationConfigError, check_prefix_series
    from cbedflow.campaigns.lao_sto_cbed.structures import build_series, series_compatible

    spec = StructureSpec("step-0005", "step", 5, 0.0, 1)
    assert not series_compatible(spec)
    with pytest.raises(ValueError, match="step-0005.*step class would change"):
        build_series(spec, GEOM, [39.0, 78.0])
    # per-thickness builds of k = 5 are not cuts of each other: refused by name
    frames = [build_structure(spec, GEOM, t) for t in (39.0, 78.0)]
    with pytest.raises(SimulationConfigError, match="step-0005.*not the"):
        check_prefix_series(frames)


# -- conformal steps (structures.step_model) ------------------------------------------

CONFORMAL = InterfaceGeometry(n_substrate=1, n_film=2, y_repeats=4, step_model="conformal")


def _translated(atoms, dx, lx):
    """Atom set of ``atoms`` moved by ``dx`` along x, wrapped into [0, lx)."""
    p = atoms.positions.copy()
    p[:, 0] = np.mod(p[:, 0] + dx + 1e-6, lx) - 1e-6
    return sorted(zip(atoms.get_chemical_symbols(), map(tuple, np.round(p, 5).tolist())))


@pytest.mark.parametrize("geom,translation", [(CONFORMAL, True),
                                               (InterfaceGeometry(1, 2, 4), False)])
def test_flat_k10_is_k0_translated_only_for_conformal_steps(geom, translation):
    """The positional shortcut of issue #15: with the paper's flat-top steps
    the k = 10 film is one cell thinner than k = 0's (not a translation);
    conformal steps move the whole stack, so k = 10 is k = 0 moved one cell."""
    lx = geom.extent_A[0]
    k0 = build_interface(geom, NZ)
    k10 = build_interface(geom, NZ, step_cells=NZ)
    assert (_translated(k0, A_STO, lx) == _translated(k10, 0.0, lx)) is translation
    same_count = Counter(k0.get_chemical_symbols()) == Counter(k10.get_chemical_symbols())
    assert same_count is translation


def test_conformal_step_moves_the_whole_stack_above_the_step_only():
    d = 4
    atoms = build_interface(CONFORMAL, NZ, step_cells=d)
    flat = build_interface(CONFORMAL, NZ)
    lx = CONFORMAL.extent_A[0]
    n_planes = 2 * CONFORMAL.cells_x
    for z in range(NZ):
        got = _cations_by_plane(atoms, z_cell=z)
        ref = _cations_by_plane(flat, z_cell=z)
        shift = 2 if z < d else 0  # one cell = two planes
        assert got == {(p + shift) % n_planes: c for p, c in ref.items()}, z
    # composition and minimum distance as in the flat cell
    assert Counter(atoms.get_chemical_symbols()) == Counter(flat.get_chemical_symbols())
    _, dist = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    assert dist[np.triu_indices(len(atoms), 1)].min() == pytest.approx(A_STO / 2, rel=1e-6)
    assert atoms.positions[:, 0].max() < lx


def test_unknown_step_model_is_refused():
    with pytest.raises(ValueError, match="step_model 'ramp' is not one of"):
        InterfaceGeometry(1, 2, 4, step_model="ramp")
