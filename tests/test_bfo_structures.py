"""BiFeO3 supercells with polarization fields (cbedflow.campaigns.bfo_polarization.structures).

Numbers behind the tolerances (measured with the builder, a = 3.965 Å):

* measure_polarization vs the requested field: float round-off only
  (~1e-12 pm); tested at 1e-6 pm.
* Minimum interatomic distance at 50 pm, oxygen_follow = 1 (10 seeds, cells
  (6, 6) and (8, 4), repeats 3): uniform and zero 1.9825 Å (= a/2, the B-O
  bond, the octahedra move rigidly); random >= 1.895 Å; drawn stripes
  >= 1.734 Å; period-2 stripes with normal y: 71 -> 1.9825 Å, 109 -> 1.804 Å.
  (oxygen_follow = 0 with a period-2 71 wall gives 1.640 Å.) Tested > 1.6 Å.
* Random field smoothness (correlation 2 cells): for a Gaussian filter of
  standard deviation xi the field's correlation is exp(-r^2 / (4 xi^2)), so
  rms(neighbour difference) / rms(|P|) = sqrt(2 (1 - exp(-1/16))) = 0.348 in
  the continuum (measured 0.348 on 64x64); small periodic grids keep fewer
  Fourier modes and are smoother: pooled over seeds 0-19, 0.22 on (6, 6)
  and 0.26 on (8, 4). White noise gives sqrt(2) (measured 1.41). Tested
  < 0.45 and, for white noise, > 1.2. Mean |neighbour difference| /
  magnitude pooled over seeds 0-19: 0.15 (6, 6), 0.13 (8, 4) vs 0.63 for
  white noise; tested < 0.25.
"""

import itertools

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from cbedflow.campaigns.bfo_polarization import structures as S

A = S.A_PC_BFO_A
KINDS = ["uniform", "stripes", "random", "zero"]
SHAPES = [(6, 6), (8, 4)]


def field(kind, cells=(6, 6), magnitude=40.0, seed=0, **options):
    return S.polarization_field(kind, cells, magnitude, np.random.default_rng(seed), **options)


def neighbour_differences(f):
    """Vector differences between all x- and y-neighbour cells, wrap-around included."""
    return np.concatenate([(np.roll(f, -1, axis) - f).reshape(-1, 2) for axis in (0, 1)])


# --- field read back from the atoms ------------------------------------------------------

@pytest.mark.parametrize("follow", [0.0, 1.0])
@pytest.mark.parametrize("cells", SHAPES + [(1, 3)])
@pytest.mark.parametrize("kind", KINDS)
def test_measured_polarization_equals_requested(kind, cells, follow):
    f = field(kind, cells, seed=3)
    atoms = S.build_bfo(f, 3, oxygen_follow=follow, dopant_fraction=0.1,
                        rng=np.random.default_rng(1))
    measured = S.measure_polarization(atoms, cells, A)
    assert measured.shape == (*cells, 2)
    np.testing.assert_allclose(measured, f, rtol=0, atol=1e-6)
    if kind != "zero":
        assert np.abs(f).max() > 1.0  # the check is not vacuous


def test_measurement_sees_a_site_shifts():
    """Moving one A column moves the label of the four cells around it by a quarter."""
    f = field("uniform", (4, 4))
    atoms = S.build_bfo(f, 2)
    on_column = np.all(np.isclose(atoms.positions[:, :2], [0.0, 0.0]), axis=1)
    # -0.2 Å: the column now crosses the cell boundary (x < 0), so this also checks the wrap
    atoms.positions[on_column & np.isin(atoms.get_chemical_symbols(), ["Bi"]), 0] -= 0.2
    delta = S.measure_polarization(atoms, (4, 4), A) - f
    expected = np.zeros((4, 4, 2))
    for i, j in [(0, 0), (-1, 0), (0, -1), (-1, -1)]:
        expected[i, j, 0] = 0.2 / 4 * 100
    np.testing.assert_allclose(delta, expected, atol=1e-9)


# --- the generators ----------------------------------------------------------------------

@pytest.mark.parametrize("cells", SHAPES)
def test_uniform(cells):
    directions = set()
    for seed in range(20):
        f = field("uniform", cells, seed=seed)
        assert f.shape == (*cells, 2)
        assert np.all(f == f[0, 0])
        np.testing.assert_allclose(np.linalg.norm(f[0, 0]), 40.0, rtol=1e-12)
        unit = f[0, 0] / 40.0
        assert np.any(np.all(np.isclose(unit, S.DIAGONALS, atol=1e-12), axis=1))
        directions.add(tuple(np.sign(unit)))
    assert len(directions) == 4  # all four diagonals get drawn


@pytest.mark.parametrize("cells", SHAPES)
@pytest.mark.parametrize("seed", range(8))
def test_stripes_two_domains(cells, seed):
    f = field("stripes", cells, seed=seed)
    const_y = np.all(f == f[:, :1]) and not np.all(f == f[:1, :])
    const_x = np.all(f == f[:1, :]) and not np.all(f == f[:, :1])
    assert const_x != const_y  # stripes along exactly one axis
    axis = 0 if const_y else 1
    profile = f[:, 0] if axis == 0 else f[0, :]
    signs = {tuple(v) for v in np.sign(profile)}
    assert len(signs) == 2  # walls lie between cells, so no cell sits at a wall centre
    # Cells with the same sign two cells either side are >= 1.5 cells from a wall:
    # there |P| is within 2% of the magnitude (tanh(3) = 0.995).
    sign = np.sign(profile)
    far = [u for u in range(len(profile))
           if all(np.array_equal(sign[u], sign[(u + s) % len(profile)]) for s in (-2, -1, 1, 2))]
    for u in far:
        assert np.linalg.norm(profile[u]) == pytest.approx(40.0, rel=0.02)
    # each component is the domain value times a smoothed square wave, |s| <= 1
    assert np.all(np.abs(profile) <= 40.0 / np.sqrt(2) + 1e-9)


@pytest.mark.parametrize("period", [2, 4])
def test_stripes_periodic(period):
    f = field("stripes", (8, 4), seed=1, normal="x", period_cells=period, wall="109")
    assert np.array_equal(np.roll(f, period, axis=0), f)
    assert not np.array_equal(np.roll(f, period // 2, axis=0), f)


def test_stripes_wall_wraps_like_interior_walls():
    """Period == supercell: whatever the drawn offset, the wall that crosses the
    supercell boundary has the same profile as the interior one."""
    profiles = set()
    shifts = set()
    for seed in range(12):
        f = field("stripes", (8, 4), seed=seed, normal="x", period_cells=8, wall="109")
        values = np.abs(f[:, 0, 0])
        profiles.add(tuple(np.round(np.sort(values), 9)))
        shifts.add(int(np.argmax(f[:, 0, 0] * np.sign(f[0, 0, 0]) < 0)))
    assert len(shifts) > 2  # different offsets were drawn
    assert len(profiles) == 1


@pytest.mark.parametrize("normal", ["x", "y"])
@pytest.mark.parametrize("wall", ["71", "109"])
def test_stripes_wall_types(wall, normal):
    f = field("stripes", (8, 8), seed=5, normal=normal, period_cells=8, wall=wall)
    axis = 0 if normal == "x" else 1
    profile = f[:, 0] if axis == 0 else f[0, :]
    first = profile[np.argmax(profile @ profile[0])]  # deepest cells of each domain
    second = profile[np.argmin(profile @ profile[0])]
    if wall == "109":
        np.testing.assert_allclose(second, -first, rtol=1e-12)
    else:
        flipped = np.sign(first) != np.sign(second)
        assert flipped.tolist() == [axis != 0, axis != 1]  # the component along the wall
        np.testing.assert_allclose(second[axis], first[axis], rtol=1e-12)
        np.testing.assert_allclose(second[1 - axis], -first[1 - axis], rtol=1e-12)
    assert np.linalg.norm(first) == pytest.approx(40.0, rel=0.02)


def test_stripes_draws_both_wall_types_and_normals():
    drawn = set()
    for seed in range(40):
        f = field("stripes", (6, 6), seed=seed)
        normal = "y" if np.all(f == f[:1, :]) else "x"
        profile = f[:, 0] if normal == "x" else f[0, :]
        kept = np.all(profile == profile[0], axis=0)
        drawn.add((normal, "71" if kept.any() else "109"))
    assert drawn == {("x", "71"), ("x", "109"), ("y", "71"), ("y", "109")}


@pytest.mark.parametrize("cells", SHAPES)
def test_random_field_magnitude_and_smoothness(cells):
    ratios = {}
    for xi in (2.0, 0.0):
        diff2 = p2 = mean_diff = 0.0
        for seed in range(20):
            f = field("random", cells, seed=seed, correlation_cells=xi)
            norms = np.linalg.norm(f, axis=-1)
            assert norms.max() == pytest.approx(40.0, rel=1e-12)
            d = neighbour_differences(f)  # includes the wrap-around pairs
            diff2 += np.mean(np.sum(d**2, axis=1))
            p2 += np.mean(norms**2)
            mean_diff += np.linalg.norm(d, axis=1).mean() / 40.0 / 20
        ratios[xi] = (np.sqrt(diff2 / p2), mean_diff)
    # see the module docstring: 0.22 / 0.26 measured, continuum theory 0.348
    assert ratios[2.0][0] < 0.45
    assert ratios[2.0][1] < 0.25
    assert ratios[0.0][0] > 1.2  # white noise (sqrt 2): the bound above is not trivial
    assert ratios[0.0][1] > 0.5


def test_zero():
    f = field("zero", (8, 4), magnitude=40.0)
    assert f.shape == (8, 4, 2) and not np.any(f)


# --- reproducibility ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["uniform", "stripes", "random"])
def test_same_seed_same_structure(kind):
    def make(seed):
        rng = np.random.default_rng(seed)
        f = S.polarization_field(kind, (6, 6), 40.0, rng)
        return f, S.build_bfo(f, 3, dopant_fraction=0.1, rng=rng)

    f1, a1 = make(11)
    f2, a2 = make(11)
    assert np.array_equal(f1, f2)
    assert np.array_equal(a1.positions, a2.positions)
    assert a1.get_chemical_symbols() == a2.get_chemical_symbols()
    f3, a3 = make(12)
    assert not np.array_equal(f1, f3) or kind == "uniform"  # uniform: 4 outcomes
    assert a1.get_chemical_symbols() != a3.get_chemical_symbols()  # dopant sites differ


def test_different_seeds_give_different_uniform_fields():
    fields = {tuple(field("uniform", seed=seed)[0, 0]) for seed in range(10)}
    assert len(fields) > 1


# --- composition and geometry ------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.0, 0.07, 0.10, 1.0])
def test_composition_and_doping(fraction):
    nx, ny, repeats = 6, 6, 3
    n = nx * ny * repeats
    atoms = S.build_bfo(field("random", (nx, ny)), repeats, dopant_fraction=fraction,
                        rng=np.random.default_rng(2))
    symbols = np.array(atoms.get_chemical_symbols())
    n_sm = int(np.sum(symbols == "Sm"))
    assert n_sm == round(fraction * n)  # 0, 8 (7.56), 11 (10.8), 108
    assert np.sum(symbols == "Bi") + n_sm == n
    assert np.sum(symbols == "Fe") == n
    assert np.sum(symbols == "O") == 3 * n
    assert len(atoms) == 5 * n
    # every A (Bi or Sm) sits on an undisplaced corner (i a, j a, k a): dopant on A sites only
    frac = atoms.positions[np.isin(symbols, ["Bi", "Sm"])] / A
    np.testing.assert_allclose(frac, np.rint(frac), atol=1e-12)
    assert atoms.info["dopant_fraction"] == n_sm / n
    np.testing.assert_allclose(atoms.cell.array, np.diag([nx * A, ny * A, repeats * A]))
    assert atoms.pbc.all()


def test_info():
    f = field("stripes", (8, 4))
    atoms = S.build_bfo(f, 2, a_A=3.9)
    info = atoms.info
    assert np.array_equal(np.array(info["polarization_pm"]), f)
    assert tuple(info["cells"]) == (8, 4)
    assert info["a_A"] == 3.9 and info["repeats"] == 2 and info["dopant_fraction"] == 0.0
    np.testing.assert_allclose(S.measure_polarization(atoms, (8, 4), 3.9), f, atol=1e-6)


def _pairs(atoms, cutoff=3.0):
    """All pairs closer than ``cutoff`` [Å], periodic images included (i, j, distance)."""
    return neighbor_list("ijd", atoms, cutoff)


def _worst_fields():
    cases = [(kind, cells, seed, {}) for kind, cells, seed in
             itertools.product(KINDS, SHAPES, range(3))]
    cases += [("stripes", (6, 6), 0, {"wall": w, "period_cells": 2, "normal": n})
              for w in ("71", "109") for n in ("x", "y")]
    return cases


@pytest.mark.parametrize("kind, cells, seed, options", _worst_fields())
def test_minimum_distance(kind, cells, seed, options):
    f = field(kind, cells, magnitude=50.0, seed=seed, **options)
    atoms = S.build_bfo(f, 3, oxygen_follow=1.0)
    assert _pairs(atoms)[2].min() > 1.6  # measured >= 1.734 Å, see the module docstring


@pytest.mark.parametrize("follow", [0.0, 1.0])
@pytest.mark.parametrize("kind", ["uniform", "stripes", "random"])
def test_b_o_distances(kind, follow):
    """Each B has six O at a/2 +- h.

    oxygen_follow = 1: the apical O moves with its B (exactly a/2); an equatorial
    O shared by cells c and c' moves by (d_c + d_c')/2, so from B_c it is at
    (a/2) e + (d_c' - d_c)/2 and |B-O - a/2| <= |d_c' - d_c| / 2 =: h.
    oxygen_follow = 0: the O are ideal and |B-O - a/2| <= |d_c| = h.
    """
    f = field(kind, (6, 6), magnitude=50.0, seed=4)
    atoms = S.build_bfo(f, 3, oxygen_follow=follow)
    symbols = np.array(atoms.get_chemical_symbols())
    i, j, dist = _pairs(atoms)
    b_o = (symbols[i] == "Fe") & (symbols[j] == "O")
    d = np.full((len(atoms), 8), np.inf)  # the 8 nearest O of each atom (O within 3 Å)
    for atom in np.flatnonzero(symbols == "Fe"):
        near = np.sort(dist[b_o & (i == atom)])[:8]
        d[atom, : len(near)] = near
    d = d[symbols == "Fe"]
    six = d[:, :6]
    if follow == 1.0:
        h = np.linalg.norm(neighbour_differences(f), axis=1).max() / 2 / 100
    else:
        h = np.linalg.norm(f, axis=-1).max() / 100
    assert np.all(np.abs(six - A / 2) <= h + 1e-9)
    assert d[:, 6].min() > A / 2 + h  # the six are the octahedron
    if kind == "uniform" and follow == 1.0:
        np.testing.assert_allclose(six, A / 2, atol=1e-12)  # rigid octahedra
    assert h > 0.05 or kind == "uniform"  # the bound is not vacuous


# --- errors ------------------------------------------------------------------------------

def test_unknown_kind():
    with pytest.raises(ValueError, match=r"kind 'spiral' is invalid; valid: uniform, stripes, "
                                         r"random, zero"):
        field("spiral")


@pytest.mark.parametrize("kind, option, valid", [
    ("uniform", "wall", r"\(none\)"),
    ("zero", "correlation_cells", r"\(none\)"),
    ("stripes", "correlation_cells", "wall_width_cells, wall, normal, period_cells"),
    ("random", "wall_width_cells", "correlation_cells"),
])
def test_unknown_option(kind, option, valid):
    with pytest.raises(ValueError, match=f"'{kind}' has no option '{option}'; valid: {valid}"):
        field(kind, **{option: 1.0})


@pytest.mark.parametrize("options, match", [
    ({"wall": "90"}, "wall='90'"),
    ({"normal": "z"}, "normal='z'"),
    ({"normal": "x", "period_cells": 3}, "period_cells=3 .* valid: 2, 4, 8"),
    ({"wall_width_cells": 0.0}, "wall_width_cells=0.0"),
])
def test_bad_stripes_options(options, match):
    with pytest.raises(ValueError, match=match):
        field("stripes", (8, 4), **options)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match=f"dopant_fraction={fraction}"):
        S.build_bfo(field("zero"), 2, dopant_fraction=fraction, rng=np.random.default_rng(0))


def test_too_large_polarization():
    f = field("uniform", (4, 4), magnitude=50.0)
    f[2, 1] = [80.0, 60.0]  # |P| = 100 pm >= a/4 = 99.125 pm
    with pytest.raises(ValueError, match=r"\|P\| = 100 pm in cell \(2, 1\).*a/4 = 99.125 pm"):
        S.build_bfo(f, 2)
    S.build_bfo(f * 0.99, 2)  # just below the limit is fine


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 3), (0, 4, 2), (4, 4, 2, 1)])
def test_wrong_field_shape(shape):
    with pytest.raises(ValueError, match=rf"field_pm shape \({shape[0]}, .* is invalid"):
        S.build_bfo(np.zeros(shape), 2)


def test_dopant_without_rng():
    with pytest.raises(ValueError, match=r"dopant_fraction=0.1 needs rng"):
        S.build_bfo(field("zero"), 2, dopant_fraction=0.1)
    S.build_bfo(field("zero"), 2, dopant_fraction=0.001)  # rounds to 0 dopants: no rng needed


@pytest.mark.parametrize("kwargs, match", [
    ({"repeats": 0}, "repeats=0"),
    ({"repeats": 2, "a_A": -1.0}, r"a_A=-1.0"),
    ({"repeats": 2, "oxygen_follow": 1.5}, "oxygen_follow=1.5"),
])
def test_bad_build_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.build_bfo(field("zero"), **kwargs)


def test_bad_cells_and_magnitude():
    with pytest.raises(ValueError, match=r"cells=\(0, 4\)"):
        field("uniform", (0, 4))
    with pytest.raises(ValueError, match="magnitude_pm=-1.0"):
        field("random", magnitude=-1.0)
    with pytest.raises(ValueError, match=r"cells=\(1, 1\) is invalid for stripes"):
        field("stripes", (1, 1))


def test_measure_rejects_wrong_cells():
    atoms = S.build_bfo(field("zero", (6, 6)), 2)
    with pytest.raises(ValueError, match=r"cells=\(6, 5\)"):
        S.measure_polarization(atoms, (6, 5), A)
