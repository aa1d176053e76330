"""Tilted perovskites in Glazer notation (cbedflow.campaigns.abf_tilts.structures).

Tolerances, from what the builder reaches (SrTiO3 bond 1.9525 Å, angles <= 12.5 deg):

* B-O lengths: exact by construction; measured max |B-O - bond| ~ 4e-16 Å,
  tested at 1e-9 relative.
* O-B-O angles: exact (< 1e-8 deg) for a0a0a0, a0a0c+, a0a0c-, a+a+a+; the
  orthogonal cell bends a0b-b-, a-a-a-, a-b+a- by ~theta^2: measured 1.11,
  1.12, 1.19 deg at 8 deg, 2.71, 2.72, 3.00 deg at 12.5 deg, a-b+a-
  (7, 10, 7): 1.27 deg; tested <= 0.02 deg^-1 * max(angle)^2.
* Measured (Kabsch rotation vector) vs nominal tilts: measured <= 4e-7 deg,
  tested at 1e-4 deg.
* Space groups: spglib at symprec 1e-3 (the brief's) and 1e-5.
"""

from collections import Counter

import numpy as np
import pytest
import spglib
from ase import Atoms
from ase.neighborlist import neighbor_list

from cbedflow.campaigns.abf_tilts import structures as S

pytestmark = pytest.mark.filterwarnings("ignore:Set OLD_ERROR_HANDLING:DeprecationWarning")

BOND = S.BOND_LENGTH_SRTIO3_A
EXACT = {"a0a0a0", "a0a0c+", "a0a0c-", "a+a+a+"}  # close with regular octahedra


def _cases():
    out = []
    for name, gs in S.GLAZER.items():
        for value in (8.0, 12.5):
            out.append((name, gs.angles([value] * gs.n_free)))
    out += [("a-b+a-", (7.0, 10.0, 7.0)), ("a-b+a-", (12.0, 4.0, 12.0))]
    return list(dict.fromkeys(out))  # a0a0a0 appears once


CASES = _cases()
IDS = [f"{n}-{'-'.join(f'{a:g}' for a in ang)}" for n, ang in CASES]


@pytest.fixture(scope="module")
def built():
    return {(n, ang): S.build_tilted_perovskite(n, ang) for n, ang in CASES}


def _symbols(atoms):
    return np.array(atoms.get_chemical_symbols())


def _pairs(atoms, first, second, cutoff):
    """(i, j, distance vectors) of first-second pairs within cutoff (minimum image)."""
    i, j, vec = neighbor_list("ijD", atoms, cutoff)
    sym = _symbols(atoms)
    keep = (sym[i] == first) & (sym[j] == second)
    return i[keep], j[keep], vec[keep]


def _spacegroup(atoms, symprec):
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    return spglib.get_symmetry_dataset(cell, symprec=symprec).number


def test_registry_matches_howard_stokes():
    expected = {"a0a0a0": (221, "Pm-3m", ()), "a0a0c-": (140, "I4/mcm", ((2,),)),
                "a0a0c+": (127, "P4/mbm", ((2,),)), "a-a-a-": (167, "R-3c", ((0, 1, 2),)),
                "a0b-b-": (74, "Imma", ((1, 2),)), "a-b+a-": (62, "Pnma", ((0, 2), (1,))),
                "a+a+a+": (204, "Im-3", ((0, 1, 2),))}
    assert set(expected) <= set(S.GLAZER)
    for name, (number, symbol, ties) in expected.items():
        gs = S.GLAZER[name]
        assert (gs.spacegroup_number, gs.spacegroup_symbol, gs.ties) == (number, symbol, ties)
    assert S.GLAZER["a-b+a-"].phases == ("-", "+", "-")
    assert S.GLAZER["a0a0c+"].tilted == (False, False, True)
    assert S.GLAZER["a-b+a-"].angles([7, 10]) == (7.0, 10.0, 7.0)


@pytest.mark.parametrize("name, angles", CASES, ids=IDS)
def test_bonds_and_corner_sharing(built, name, angles):
    atoms = built[(name, angles)]
    assert Counter(atoms.get_chemical_symbols()) == {"Sr": 8, "Ti": 8, "O": 24}
    assert np.allclose(atoms.cell.array, np.diag(np.diag(atoms.cell.array)), atol=0)
    i, _, vec = _pairs(atoms, "Ti", "O", 1.1 * BOND)
    assert np.bincount(i, minlength=len(atoms))[_symbols(atoms) == "Ti"].tolist() == [6] * 8
    dist = np.linalg.norm(vec, axis=1)
    assert np.abs(dist / BOND - 1).max() < 1e-9
    assert np.abs(dist - BOND).max() == pytest.approx(atoms.info["max_bo_deviation_A"], abs=1e-12)
    i, _, _ = _pairs(atoms, "O", "Ti", 1.1 * BOND)
    assert np.bincount(i, minlength=len(atoms))[_symbols(atoms) == "O"].tolist() == [2] * 24


@pytest.mark.parametrize("name, angles", CASES, ids=IDS)
def test_octahedra_regularity(built, name, angles):
    atoms = built[(name, angles)]
    i, _, vec = _pairs(atoms, "Ti", "O", 1.1 * BOND)
    worst = 0.0
    for b in np.unique(i):
        v = vec[i == b]
        p, q = np.triu_indices(6, 1)
        ang = np.degrees(np.arctan2(np.linalg.norm(np.cross(v[p], v[q]), axis=1),
                                    np.einsum("ij,ij->i", v[p], v[q])))
        ideal = np.where(ang > 135, 180.0, 90.0)  # 3 trans and 12 cis pairs
        assert (ideal == 180).sum() == 3
        worst = max(worst, np.abs(ang - ideal).max())
    assert worst == pytest.approx(atoms.info["max_obo_deviation_deg"], abs=1e-6)
    if name in EXACT:
        assert worst < 1e-8
    else:
        assert 0 < worst <= 0.02 * max(angles) ** 2


@pytest.mark.parametrize("name, angles", CASES, ids=IDS)
def test_a_site_has_twelve_oxygens(built, name, angles):
    atoms = built[(name, angles)]
    a = 2 * BOND  # cubic: 12 O at a/sqrt(2), the next at a sqrt(3/2)
    i, _, _ = _pairs(atoms, "Sr", "O", 0.5 * (a / np.sqrt(2) + a * np.sqrt(1.5)))
    assert np.bincount(i, minlength=len(atoms))[_symbols(atoms) == "Sr"].tolist() == [12] * 8


@pytest.mark.parametrize("name, angles", CASES, ids=IDS)
def test_space_group(built, name, angles):
    atoms = built[(name, angles)]
    expected = S.GLAZER[name].spacegroup_number
    assert _spacegroup(atoms, 1e-3) == expected
    assert _spacegroup(atoms, 1e-5) == expected


def test_untilted_is_primitive_cubic():
    atoms = S.build_tilted_perovskite("a0a0a0", (0, 0, 0))
    assert _spacegroup(atoms, 1e-3) == 221
    lattice, _, numbers = spglib.find_primitive(
        (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
    assert sorted(numbers.tolist()) == [8, 8, 8, 22, 38]
    assert np.allclose(np.abs(lattice), 2 * BOND * np.eye(3), atol=1e-9)


@pytest.mark.parametrize("name", ["a0b-b-", "a-b+a-"])
def test_zero_tilts_raise_symmetry(name):
    # a tilt system with one angle group at 0 is a higher-symmetry one
    angles = {"a0b-b-": (0, 0, 0), "a-b+a-": (0, 10, 0)}[name]
    assert _spacegroup(S.build_tilted_perovskite(name, angles), 1e-3) == {"a0b-b-": 221,
                                                                         "a-b+a-": 127}[name]


@pytest.mark.parametrize("name, angles", CASES, ids=IDS)
def test_measured_tilts_are_nominal(built, name, angles):
    atoms = built[(name, angles)]
    measured = S.measure_tilts(atoms)
    assert measured.shape == (8, 3)
    np.testing.assert_allclose(np.abs(measured), np.broadcast_to(angles, (8, 3)), atol=1e-4)
    np.testing.assert_allclose(measured, atoms.info["tilts_measured_deg"], atol=1e-9)


@pytest.mark.parametrize("name, angles", CASES, ids=IDS)
def test_phase_pattern(built, name, angles):
    """Along its own axis a tilt keeps its sign ('+') or flips it ('-'); along
    the two other axes it always flips."""
    atoms = built[(name, angles)]
    measured = S.measure_tilts(atoms)
    ti = atoms.positions[_symbols(atoms) == "Ti"]
    site = np.rint(ti / atoms.info["pc_lengths_A"]).astype(int) % 2
    index = {tuple(s): n for n, s in enumerate(site)}
    phases = S.GLAZER[name].phases
    for n, s in enumerate(site):
        for step in range(3):
            m = index[tuple((s + np.eye(3, dtype=int)[step]) % 2)]
            for u in range(3):
                if phases[u] == "0":
                    assert measured[n, u] == pytest.approx(0, abs=1e-6)
                    continue
                same = step == u and phases[u] == "+"
                assert np.sign(measured[n, u]) == (1 if same else -1) * np.sign(measured[m, u])


@pytest.mark.parametrize("name", ["a0a0c+", "a0a0c-"])
def test_single_axis_tilt_from_oxygen_offsets(name):
    """Independent of the Kabsch fit: an equatorial O sits bond*sin(gamma) off the B-B line."""
    atoms = S.build_tilted_perovskite(name, (0, 0, 11))
    lengths = atoms.info["pc_lengths_A"]
    o = atoms.positions[_symbols(atoms) == "O"]
    frac = o / lengths
    off_x = np.abs(frac[:, 1] - np.rint(frac[:, 1])) * lengths[1]  # O on x links: y offset
    on_x = np.abs(frac[:, 0] % 1 - 0.5) < 0.1
    assert on_x.sum() == 8
    assert np.degrees(np.arcsin(off_x[on_x] / BOND)) == pytest.approx(11.0, abs=1e-9)
    assert lengths == pytest.approx([2 * BOND * np.cos(np.radians(11))] * 2 + [2 * BOND], abs=1e-12)


def test_measure_tilts_of_a_rotated_octahedron():
    from scipy.spatial.transform import Rotation

    rotvec = np.radians([3.0, -5.0, 7.0])
    vertices = Rotation.from_rotvec(rotvec).apply(
        BOND * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]))
    atoms = Atoms("TiO6", positions=np.vstack([[0, 0, 0], vertices]) + 5.0,
                  cell=[10, 10, 10], pbc=True)
    atoms.info["b_site"] = "Ti"
    assert S.measure_tilts(atoms) == pytest.approx(np.array([[3.0, -5.0, 7.0]]), abs=1e-9)


def test_reproducible_draws_and_structures():
    gs = S.GLAZER["a-b+a-"]
    first = gs.draw(np.random.default_rng(42), 2.0, 12.0)
    again = gs.draw(np.random.default_rng(42), 2.0, 12.0)
    other = gs.draw(np.random.default_rng(43), 2.0, 12.0)
    assert first == again and first != other
    assert first[0] == first[2] and 2.0 <= first[0] <= 12.0 and 2.0 <= first[1] <= 12.0
    a = S.build_tilted_perovskite(gs.name, first)
    b = S.build_tilted_perovskite(gs.name, again)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.cell, b.cell)
    assert S.GLAZER["a0a0c-"].draw(np.random.default_rng(0), 5, 6)[:2] == (0.0, 0.0)
    assert S.GLAZER["a0a0a0"].draw(np.random.default_rng(0)) == (0.0, 0.0, 0.0)


def _nn_distances(atoms, cutoff=3.0):
    return np.sort(neighbor_list("d", atoms, cutoff))


@pytest.mark.parametrize("name, angles", [c for c in CASES if c[1] in ((8.0,) * 3, (0, 8.0, 8.0),
                                                                       (0, 0, 8.0), (0.0, 0.0, 0.0),
                                                                       (7.0, 10.0, 7.0))],
                         ids=lambda v: v if isinstance(v, str) else "-".join(f"{a:g}" for a in v))
@pytest.mark.parametrize("repeat", [1, 3])
def test_projection_110(built, name, angles, repeat):
    atoms = built[(name, angles)]
    proj = S.projected_110(atoms, repeat)
    cell = proj.cell.array
    assert np.array_equal(cell, np.diag(np.diag(cell))) and proj.pbc.all()
    assert Counter(proj.get_chemical_symbols()) == {
        k: 2 * repeat * v for k, v in Counter(atoms.get_chemical_symbols()).items()}
    lengths = atoms.info["pc_lengths_A"]
    strain = np.abs(proj.info["strain_pc"]).max()
    if lengths[0] == pytest.approx(lengths[1], abs=1e-12):
        assert strain == 0
    else:
        assert 0 < strain < 0.01  # a0b-b- and a-b+a-: x and y differ (<= 0.5 % here)
    assert proj.info["pc_to_lab"][2] == pytest.approx(np.array([1, 1, 0]) / np.sqrt(2), abs=1e-3)
    assert cell[2, 2] == pytest.approx(repeat * 2 * np.hypot(*lengths[:2]), rel=1e-9)
    assert proj.info["thickness_A"] == cell[2, 2]
    d0 = np.sort(np.tile(_nn_distances(atoms), 2 * repeat))
    d1 = _nn_distances(proj)
    assert d1.shape == d0.shape
    assert np.abs(d1 - d0).max() <= 1e-9 + 3.0 * strain
    # every octahedron is whole across the periodic in-plane boundaries
    tilts = S.measure_tilts(proj)
    assert tilts.shape == (16 * repeat, 3)
    assert np.abs(np.abs(tilts) - np.abs(angles)).max() < 1e-4 + 3 * np.degrees(strain)


@pytest.mark.parametrize("name", list(S.GLAZER))
def test_projection_100(name):
    gs = S.GLAZER[name]
    atoms = S.build_tilted_perovskite(name, gs.angles([9.0] * gs.n_free))
    proj = S.projected_100(atoms, 2)
    assert np.array_equal(proj.cell.array, np.diag(np.diag(proj.cell.array)))
    assert np.diag(proj.cell.array) == pytest.approx(
        atoms.info["pc_lengths_A"][[1, 2, 0]] * 2 * np.array([1, 1, 2]), rel=1e-12)
    assert proj.info["strain_pc"].tolist() == [0, 0, 0]
    d0 = np.sort(np.tile(_nn_distances(atoms), 2))
    assert np.abs(_nn_distances(proj) - d0).max() < 1e-9
    assert np.sort(np.abs(S.measure_tilts(proj)), axis=0) == pytest.approx(
        np.sort(np.abs(np.tile(S.measure_tilts(atoms), (2, 1))), axis=0), abs=1e-9)


def test_projection_refuses_large_strain_and_names_the_fitting_zone():
    atoms = S.build_tilted_perovskite("a0b-b-", (0, 20, 20))
    with pytest.raises(ValueError, match=r"zone 110 needs strain .*: 011$"):
        S.projected_110(atoms, 1)
    assert np.abs(S.project(atoms, "011").info["strain_pc"]).max() == 0


@pytest.mark.parametrize("call, match", [
    (lambda: S.build_tilted_perovskite("a0a0b-", (0, 0, 5)), r"'a0a0b-'.*valid: a0a0a0"),
    (lambda: S.build_tilted_perovskite("a0a0c-", (0, 0, 25)), r"gamma=25 deg is outside \[0, 20\]"),
    (lambda: S.build_tilted_perovskite("a0a0c-", (0, 0, -1)), r"gamma=-1 deg is outside"),
    (lambda: S.build_tilted_perovskite("a0a0c-", (0, 0, np.nan)), r"gamma=nan deg"),
    (lambda: S.build_tilted_perovskite("a0a0c-", (2, 0, 5)), r"alpha=2 deg about untilted axis x"),
    (lambda: S.build_tilted_perovskite("a-b+a-", (7, 10, 8)),
     r"alpha=7, gamma=8 deg differ.*alpha=gamma"),
    (lambda: S.build_tilted_perovskite("a-a-a-", (5, 5)), r"angles_deg=\(5, 5\)"),
    (lambda: S.build_tilted_perovskite("a-a-a-", (5, 5, 5), b_site="Xx"), r"b_site='Xx'"),
    (lambda: S.build_tilted_perovskite("a-a-a-", (5, 5, 5), bond_length_A=0.2),
     r"bond_length_A=0.2"),
    (lambda: S.GLAZER["a-b+a-"].angles([7]),
     r"a-b\+a- takes 2 free angle\(s\) \(alpha=gamma, beta\)"),
    (lambda: S.GLAZER["a-b+a-"].draw(np.random.default_rng(0), 5, 30), r"\[5, 30\] deg"),
    (lambda: S.GLAZER["a-b+a-"].angles([7, 21]), r"beta=21 deg is outside"),
    (lambda: S.GlazerSystem.from_notation("a-b+", 1, "P1"), r"'a-b\+'"),
    (lambda: S.project(S.build_tilted_perovskite("a0a0a0", (0, 0, 0)), "111"),
     r"zone='111'.*valid"),
    (lambda: S.projected_110(S.build_tilted_perovskite("a0a0a0", (0, 0, 0)), 0),
     r"repeat_along_beam=0"),
])
def test_bad_inputs_raise_naming_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()
