"""(Sm-doped) BiFeO3 supercells with a per-unit-cell polarization field.

The crystal is seen along [001] pseudocubic (pc), the beam along z. In
projection the A (Bi, or the Sm dopant) columns sit at the cell corners
``(i a, j a)``, the B-O columns (Fe and apical O alternating along z) at
``((i + 1/2) a, (j + 1/2) a)`` and the pure O columns at ``((i + 1/2) a, j a)``
and ``(i a, (j + 1/2) a)``.

Polarization label
------------------
As in the seed paper (Ghosh et al.), the label ``P`` of unit cell ``(i, j)``
is the projected in-plane vector [pm] from the centre of the cell's four
A-site neighbours (corners ``(i, j)``, ``(i+1, j)``, ``(i, j+1)``,
``(i+1, j+1)``) to its B-site column. Sign convention: the physical
polarization of BiFeO3 points *opposite* to this Fe-minus-Bi displacement;
we keep the seed's definition, so ``P`` here is the B displacement.

Contents
--------
* :data:`FIELDS` / :func:`polarization_field`: generators of ``(nx, ny, 2)``
  fields [pm], periodic over the supercell (the simulated image is periodic).
* :func:`build_bfo`: the :class:`ase.Atoms` supercell carrying a field.
* :func:`measure_polarization`: the field read back from atom positions
  alone, independently of the build (a check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # ase is in the simulation environment only (predict imports the package)
    from ase import Atoms

#: Pseudocubic lattice parameter of BiFeO3 [Å]: the pseudocubic value of
#: rhombohedral R3c BFO, a_pc = 3.965 Å with alpha_pc = 89.3 deg (Kubel &
#: Schmid 1990, Acta Cryst. B46, 698), i.e. about a_hex / sqrt(2) =
#: 5.58 Å / sqrt(2) ~ 3.95 Å. The orthogonal model cell uses it on all axes.
A_PC_BFO_A = 3.965

#: The four projected <111> directions of rhombohedral BFO on (001)pc
#: (unit vectors, ``(+-1, +-1) / sqrt(2)``).
DIAGONALS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]) / np.sqrt(2.0)

FieldGenerator = Callable[..., np.ndarray]


def _check_cells(cells: tuple[int, int]) -> tuple[int, int]:
    """Validate a supercell size ``(nx, ny)`` [unit cells]; return it as ints."""
    try:
        nx, ny = cells
    except (TypeError, ValueError):
        raise ValueError(f"cells={cells!r} is invalid; valid: (nx, ny) with ints >= 1") from None
    ok = all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 1
             for n in (nx, ny))
    if not ok:
        raise ValueError(f"cells={cells!r} is invalid; valid: (nx, ny) with ints >= 1")
    return int(nx), int(ny)


def _check_magnitude(magnitude_pm: float) -> float:
    """Validate a field magnitude [pm]: finite and >= 0."""
    if not (np.isfinite(magnitude_pm) and magnitude_pm >= 0):
        raise ValueError(f"magnitude_pm={magnitude_pm!r} is invalid; valid: finite and >= 0")
    return float(magnitude_pm)


def _options(kind: str, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Merge ``given`` into ``defaults``; unknown names raise ValueError."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "(none)"
        raise ValueError(
            f"polarization field {kind!r} has no option {unknown[0]!r}; valid: {valid}"
        )
    return {**defaults, **given}


def uniform_field(cells: tuple[int, int], magnitude_pm: float, rng: np.random.Generator,
                  **options: Any) -> np.ndarray:
    """One domain: the same vector in every cell.

    Parameters
    ----------
    cells : tuple of int
        Supercell size ``(nx, ny)`` [unit cells].
    magnitude_pm : float
        ``|P|`` of every cell [pm].
    rng : numpy.random.Generator
        Draws the direction among the four projected <111> directions
        ``(+-1, +-1) / sqrt(2)`` of rhombohedral BFO.
    **options
        None are taken.

    Returns
    -------
    numpy.ndarray
        Shape ``(nx, ny, 2)`` [pm].
    """
    _options("uniform", options, {})
    nx, ny = _check_cells(cells)
    vector = _check_magnitude(magnitude_pm) * DIAGONALS[rng.integers(4)]
    return np.broadcast_to(vector, (nx, ny, 2)).copy()


def _periodic_square_wave(period: int, width: int, wall_width: float,
                          shift: int) -> np.ndarray:
    """Smooth +-1 square wave sampled at integer cells ``0 .. period - 1``.

    +1 on cells ``shift .. shift + width - 1`` (mod ``period``), -1 elsewhere;
    the walls lie between cells, at ``shift - 1/2`` and ``shift + width - 1/2``,
    each a ``tanh(distance / wall_width)`` step. The step is summed over
    periodic images until the neglected tail is < exp(-40), so the samples are
    periodic to machine precision; tiling them makes the field exactly periodic.
    """
    u = np.arange(period, dtype=float)
    rise, fall = shift - 0.5, shift + width - 0.5
    n_images = int(np.ceil(20.0 * wall_width / period)) + 2
    s = -np.ones(period)
    for m in range(-n_images, n_images + 1):
        s += np.tanh((u - rise - m * period) / wall_width)
        s -= np.tanh((u - fall - m * period) / wall_width)
    return s


def stripes_field(cells: tuple[int, int], magnitude_pm: float, rng: np.random.Generator,
                  **options: Any) -> np.ndarray:
    """Two domains alternating in stripes, separated by smooth walls.

    The first domain has ``P = magnitude_pm * d``, ``d`` one of the four
    projected <111> directions ``(+-1, +-1) / sqrt(2)``. The second domain:

    * ``"71"`` wall: the component *parallel* to the wall flips, the one along
      the wall normal is kept (a neutral wall: ``P . n`` continuous), e.g.
      [111] -> [1-11] across a wall with normal x;
    * ``"109"`` wall: both projected components flip (opposite projected
      direction). In [001] projection a 109 deg wall can look like either case
      (the third, beam-parallel component is not seen); we use the flip-both
      reading.

    Along the wall normal each flipping component follows
    ``magnitude_pm * d_c * s(u)``, with ``s`` a periodic sum of
    ``tanh(distance / wall_width_cells)`` steps (about +-1 deep in a domain,
    0 at a wall centre; walls lie between cells). The kept component is
    constant. Narrow stripes never reach ``|s| = 1``: at period 2 and width
    0.5, ``|s| = 0.53``.

    Parameters
    ----------
    cells : tuple of int
        Supercell size ``(nx, ny)`` [unit cells].
    magnitude_pm : float
        ``|P|`` deep inside a domain [pm].
    rng : numpy.random.Generator
        Draws, in this order and always (so fixing one option does not change
        the other draws): ``d``, the wall type, the normal, the period and the
        stripe offset (a cyclic shift, 0 .. period - 1 cells).
    **options
        ``wall_width_cells`` (float > 0, default 0.5): tanh width [cells].
        ``wall`` (``"71"`` or ``"109"``), ``normal`` (``"x"`` or ``"y"``),
        ``period_cells`` (a divisor >= 2 of the supercell length along the
        normal) [cells]: drawn when None (the default), the normal among the
        axes with >= 2 cells, the period among those divisors, so the field is
        periodic. One period holds ``period // 2`` cells of the second domain
        and the rest of the first.

    Returns
    -------
    numpy.ndarray
        Shape ``(nx, ny, 2)`` [pm].
    """
    opts = _options("stripes", options, {"wall_width_cells": 0.5, "wall": None,
                                         "normal": None, "period_cells": None})
    nx, ny = _check_cells(cells)
    magnitude = _check_magnitude(magnitude_pm)
    wall_width = opts["wall_width_cells"]
    if not (np.isfinite(wall_width) and wall_width > 0):
        raise ValueError(f"wall_width_cells={wall_width!r} is invalid; valid: finite and > 0")

    d = DIAGONALS[rng.integers(4)]
    walls = ("71", "109")
    wall_drawn = walls[rng.integers(2)]
    axes = [name for name, n in (("x", nx), ("y", ny)) if n >= 2]
    if not axes:
        raise ValueError(f"cells={cells!r} is invalid for stripes; valid: >= 2 cells on an axis")
    normal_drawn = axes[rng.integers(len(axes))]

    wall = wall_drawn if opts["wall"] is None else str(opts["wall"])
    if wall not in walls:
        raise ValueError(f"wall={opts['wall']!r} is invalid; valid: 71, 109")
    normal = normal_drawn if opts["normal"] is None else opts["normal"]
    if normal not in ("x", "y"):
        raise ValueError(f"normal={normal!r} is invalid; valid: x, y")
    axis = 0 if normal == "x" else 1
    length = (nx, ny)[axis]
    divisors = [p for p in range(2, length + 1) if length % p == 0]
    if not divisors:
        raise ValueError(f"normal={normal!r} is invalid for cells={cells!r}; "
                         "valid: an axis with >= 2 cells")
    period_drawn = divisors[rng.integers(len(divisors))]
    period = period_drawn if opts["period_cells"] is None else opts["period_cells"]
    if period not in divisors:
        raise ValueError(f"period_cells={period!r} is invalid for {length} cells along "
                         f"{normal}; valid: {', '.join(map(str, divisors))}")
    shift = int(rng.integers(period))

    s = _periodic_square_wave(period, period - period // 2, wall_width, shift)
    s = np.tile(s, length // period)  # exactly periodic
    flips = np.array([True, True]) if wall == "109" else np.arange(2) != axis
    along = magnitude * np.where(flips[None, :], d[None, :] * s[:, None], d[None, :])
    shape = (length, 1, 2) if axis == 0 else (1, length, 2)
    return np.broadcast_to(along.reshape(shape), (nx, ny, 2)).copy()


def random_field(cells: tuple[int, int], magnitude_pm: float, rng: np.random.Generator,
                 **options: Any) -> np.ndarray:
    """A smooth, periodic random vector field.

    White noise (two independent standard-normal components per cell) is
    filtered in Fourier space by ``exp(-k^2 xi^2 / 2)`` (a real-space Gaussian
    convolution of standard deviation ``xi = correlation_cells``), which keeps
    it periodic, then scaled so that the largest cell ``|P|`` equals
    ``magnitude_pm``.

    Parameters
    ----------
    cells : tuple of int
        Supercell size ``(nx, ny)`` [unit cells].
    magnitude_pm : float
        Largest ``|P|`` over the cells [pm].
    rng : numpy.random.Generator
        Draws the noise.
    **options
        ``correlation_cells`` (float >= 0, default 2.0) [cells]; 0 gives
        white noise.

    Returns
    -------
    numpy.ndarray
        Shape ``(nx, ny, 2)`` [pm].
    """
    opts = _options("random", options, {"correlation_cells": 2.0})
    nx, ny = _check_cells(cells)
    magnitude = _check_magnitude(magnitude_pm)
    xi = opts["correlation_cells"]
    if not (np.isfinite(xi) and xi >= 0):
        raise ValueError(f"correlation_cells={xi!r} is invalid; valid: finite and >= 0")
    noise = rng.standard_normal((nx, ny, 2))
    kx = 2 * np.pi * np.fft.fftfreq(nx)[:, None]
    ky = 2 * np.pi * np.fft.fftfreq(ny)[None, :]
    gauss = np.exp(-0.5 * (kx**2 + ky**2) * xi**2)
    field = np.fft.ifft2(np.fft.fft2(noise, axes=(0, 1)) * gauss[..., None], axes=(0, 1)).real
    largest = np.linalg.norm(field, axis=-1).max()
    if largest == 0:
        return np.zeros((nx, ny, 2))
    return field * (magnitude / largest)


def zero_field(cells: tuple[int, int], magnitude_pm: float, rng: np.random.Generator,
               **options: Any) -> np.ndarray:
    """``P = 0`` everywhere (the centrosymmetric reference, e.g. for mistilt).

    ``magnitude_pm`` is validated and ignored, ``rng`` is not used; no
    options are taken. Returns zeros of shape ``(nx, ny, 2)`` [pm].
    """
    _options("zero", options, {})
    nx, ny = _check_cells(cells)
    _check_magnitude(magnitude_pm)
    return np.zeros((nx, ny, 2))


#: Polarization-field generators by kind:
#: ``f(cells, magnitude_pm, rng, **options) -> (nx, ny, 2)`` [pm], periodic.
FIELDS: dict[str, FieldGenerator] = {
    "uniform": uniform_field,
    "stripes": stripes_field,
    "random": random_field,
    "zero": zero_field,
}


def polarization_field(kind: str, cells: tuple[int, int], magnitude_pm: float,
                       rng: np.random.Generator, **options: Any) -> np.ndarray:
    """Draw a polarization field of one of the :data:`FIELDS` kinds.

    Parameters
    ----------
    kind : str
        A key of :data:`FIELDS`.
    cells, magnitude_pm, rng, **options
        Passed to the generator (``cells`` [unit cells], ``magnitude_pm`` [pm]).

    Returns
    -------
    numpy.ndarray
        Shape ``(nx, ny, 2)`` [pm].
    """
    if kind not in FIELDS:
        raise ValueError(f"polarization field kind {kind!r} is invalid; "
                         f"valid: {', '.join(FIELDS)}")
    return FIELDS[kind](cells, magnitude_pm, rng, **options)


def build_bfo(field_pm: np.ndarray, repeats: int, a_A: float = A_PC_BFO_A,
              dopant_fraction: float = 0.0, rng: np.random.Generator | None = None,
              a_site: str = "Bi", dopant: str = "Sm", b_site: str = "Fe",
              oxygen_follow: float = 1.0, substrate_cells: int = 0,
              substrate: tuple[str, str] = ("Sr", "Ti")) -> Atoms:
    """An ABO3 supercell whose B cations carry a polarization field.

    Unit cell ``(i, j, k)`` holds A at ``(i, j, k) a``, B at
    ``((i + 1/2) a + dx, (j + 1/2) a + dy, (k + 1/2) a)`` with
    ``(dx, dy) = field_pm[i, j] / 100`` [Å], and three O: the apical one at
    ``((i + 1/2) a, (j + 1/2) a, k a)`` (in the B column) and the equatorial
    ones at ``((i + 1/2) a, j a, (k + 1/2) a)`` (shared by cells ``(i, j - 1)``
    and ``(i, j)``) and ``(i a, (j + 1/2) a, (k + 1/2) a)`` (shared by
    ``(i - 1, j)`` and ``(i, j)``), neighbours taken periodically. The apical
    O moves by ``oxygen_follow * d`` of its cell, an equatorial O by
    ``oxygen_follow`` times the mean ``d`` of its two cells: the BO6
    octahedra follow the B cation as a near-rigid cage, so B-O distances stay
    near ``a / 2`` (with ``oxygen_follow = 1`` they deviate by at most half
    the neighbour-cell difference of ``d``) and no atoms come unphysically
    close. ``oxygen_follow = 0`` keeps the O sublattice ideal.

    Parameters
    ----------
    field_pm : numpy.ndarray
        Shape ``(nx, ny, 2)``: the in-plane B displacement of each cell [pm];
        every ``|P| < a / 4`` (B well inside its cell).
    repeats : int
        Unit cells along the beam (z), >= 1.
    a_A : float
        Pseudocubic lattice parameter [Å], > 0.
    dopant_fraction : float
        Fraction of A sites, in [0, 1], that become ``dopant``: exactly
        ``round(dopant_fraction * n_A)`` of them, drawn uniformly without
        replacement by ``rng`` (required when the fraction is > 0).
    rng : numpy.random.Generator, optional
        Draws the dopant sites.
    a_site, dopant, b_site : str
        Chemical symbols of the A cation, the A-site dopant and the B cation.
    oxygen_follow : float
        In [0, 1]: how far the O follow their octahedron's B (see above).
    substrate_cells : int
        The first ``substrate_cells`` cells along x are the substrate (a film
        on it, the interface normal along x): A and B of ``substrate``
        (SrTiO3), no dopant, and their field must be zero (paraelectric). The
        film is coherent: the whole supercell has the lattice parameter
        ``a_A`` (SrTiO3's own 3.905 Å differs from BiFeO3's by 1.5 %).
    substrate : tuple of str
        A and B cation of the substrate.

    Returns
    -------
    ase.Atoms
        Orthogonal cell ``(nx a, ny a, repeats a)``, pbc on, ``5 nx ny repeats``
        atoms (all A, then B, apical O, O at y-edges, O at x-edges). ``info``:
        ``polarization_pm`` (nested lists), ``cells``, ``a_A``,
        ``dopant_fraction`` (realised), ``repeats``, ``oxygen_follow``.
    """
    field = np.asarray(field_pm, dtype=float)
    if field.ndim != 3 or field.shape[2] != 2 or min(field.shape[:2]) < 1:
        raise ValueError(f"field_pm shape {field.shape} is invalid; "
                         "valid: (nx, ny, 2) with nx, ny >= 1")
    if not np.all(np.isfinite(field)):
        raise ValueError("field_pm has non-finite values; valid: finite [pm]")
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} is invalid; valid: int >= 1")
    if not (np.isfinite(a_A) and a_A > 0):
        raise ValueError(f"a_A={a_A!r} is invalid; valid: finite and > 0 [Å]")
    if not (0.0 <= dopant_fraction <= 1.0):
        raise ValueError(f"dopant_fraction={dopant_fraction!r} is invalid; valid: [0, 1]")
    if not (0.0 <= oxygen_follow <= 1.0):
        raise ValueError(f"oxygen_follow={oxygen_follow!r} is invalid; valid: [0, 1]")
    norms = np.linalg.norm(field, axis=-1)
    limit_pm = 25.0 * a_A  # a / 4 in pm
    if norms.max() >= limit_pm:
        worst = np.unravel_index(np.argmax(norms), norms.shape)
        raise ValueError(f"|P| = {norms.max():.6g} pm in cell {tuple(map(int, worst))} is "
                         f"invalid; valid: < a/4 = {limit_pm:.6g} pm")

    nx, ny = field.shape[:2]
    if not 0 <= int(substrate_cells) < nx:
        raise ValueError(f"substrate_cells={substrate_cells!r} is invalid; valid: 0 .. {nx - 1} "
                         "(cells along x, the film keeps at least one)")
    sub = int(substrate_cells)
    if sub and np.abs(field[:sub]).max() > 0:
        raise ValueError(f"field_pm is {np.abs(field[:sub]).max():.6g} pm in the substrate; "
                         "valid: zero in the first substrate_cells cells along x")
    nz = int(repeats)
    n_a = nx * ny * nz
    in_film = np.repeat(np.arange(nx) >= sub, ny * nz)  # A/B index = (i ny + j) nz + k
    n_film = int(in_film.sum())
    n_dopant = int(round(dopant_fraction * n_film))
    if n_dopant > 0 and rng is None:
        raise ValueError(f"dopant_fraction={dopant_fraction!r} needs rng; valid: a "
                         "numpy.random.Generator")

    d = field / 100.0  # pm -> Å, (nx, ny, 2)
    d_y_edge = 0.5 * (d + np.roll(d, 1, axis=1))  # O at ((i+1/2)a, j a): cells (i, j-1), (i, j)
    d_x_edge = 0.5 * (d + np.roll(d, 1, axis=0))  # O at (i a, (j+1/2)a): cells (i-1, j), (i, j)

    i, j, k = (g.ravel().astype(float) for g in np.meshgrid(
        np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"))

    def site(fx: float, fy: float, fz: float, shift: np.ndarray | None) -> np.ndarray:
        """Positions [Å] of one sublattice at fractional offset (fx, fy, fz)."""
        pos = np.stack([(i + fx) * a_A, (j + fy) * a_A, (k + fz) * a_A], axis=1)
        if shift is not None:  # (nx, ny, 2) [Å], the same for every k
            pos[:, :2] += np.repeat(shift.reshape(nx * ny, 2), nz, axis=0)
        return pos

    positions = np.concatenate([
        site(0.0, 0.0, 0.0, None),
        site(0.5, 0.5, 0.5, d),
        site(0.5, 0.5, 0.0, oxygen_follow * d),
        site(0.5, 0.0, 0.5, oxygen_follow * d_y_edge),
        site(0.0, 0.5, 0.5, oxygen_follow * d_x_edge),
    ])
    a_symbols = np.where(in_film, a_site, substrate[0]).astype(object)
    if n_dopant > 0:
        a_symbols[np.flatnonzero(in_film)[rng.choice(n_film, size=n_dopant,
                                                     replace=False)]] = dopant
    b_symbols = np.where(in_film, b_site, substrate[1]).astype(object)
    symbols = list(a_symbols) + list(b_symbols) + ["O"] * (3 * n_a)

    from ase import Atoms

    atoms = Atoms(symbols=symbols, positions=positions,
                  cell=[nx * a_A, ny * a_A, nz * a_A], pbc=True)
    atoms.info.update({
        "polarization_pm": field.tolist(),
        "cells": (nx, ny),
        "a_A": float(a_A),
        "dopant_fraction": n_dopant / n_film,
        "substrate_cells": sub,
        "repeats": nz,
        "oxygen_follow": float(oxygen_follow),
    })
    return atoms


def _wrap(x: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Wrap differences into ``[-length/2, length/2)`` (minimum image)."""
    return x - length * np.floor(x / length + 0.5)


def measure_polarization(atoms: Atoms, cells: tuple[int, int], a_A: float,
                         a_sites: tuple[str, ...] = ("Bi", "Sm"),
                         b_site: str | tuple[str, ...] = "Fe") -> np.ndarray:
    """Read the polarization field back from atom positions and symbols.

    Independent of :func:`build_bfo`'s arrays: each B atom (symbol ``b_site``)
    goes to cell ``(floor(x / a), floor(y / a))`` of its wrapped position, and
    the cell's B column position is the mean projected ``(x, y)`` of its B
    atoms. Each A atom (symbol in ``a_sites``) goes to the nearest corner
    ``(round(x / a), round(y / a))``; a corner's column position is the mean
    of its atoms (minimum-image offsets from the ideal corner). For cell
    ``(i, j)`` the four corner columns are taken relative to the B column by
    minimum image about their ideal offsets ``(+-a/2, +-a/2)`` (so a supercell
    one cell wide, whose left and right corners are the same column, also
    works), and ``P = B - mean(A)``.

    Parameters
    ----------
    atoms : ase.Atoms
        Orthogonal, periodic supercell of ``cells`` pseudocubic cells in plane.
    cells : tuple of int
        ``(nx, ny)`` [unit cells].
    a_A : float
        Pseudocubic lattice parameter [Å].
    a_sites : tuple of str
        Symbols counted as A-site cations.
    b_site : str or tuple of str
        Symbol(s) of the B cation(s).

    Returns
    -------
    numpy.ndarray
        Shape ``(nx, ny, 2)`` [pm].
    """
    nx, ny = _check_cells(cells)
    if not (np.isfinite(a_A) and a_A > 0):
        raise ValueError(f"a_A={a_A!r} is invalid; valid: finite and > 0 [Å]")
    length = np.array([nx * a_A, ny * a_A])
    lengths = atoms.cell.lengths()[:2]
    if not np.allclose(lengths, length, rtol=0, atol=1e-6):
        raise ValueError(f"cell lengths {lengths.tolist()} Å do not match cells={cells!r} "
                         f"and a_A={a_A!r}; valid: {length.tolist()} Å")
    symbols = np.array(atoms.get_chemical_symbols())
    xy = atoms.get_positions()[:, :2]
    shape = np.array([nx, ny])

    def columns(mask: np.ndarray, index: np.ndarray, ideal_offset: float,
                what: str) -> np.ndarray:
        """Mean projected position of the atoms in each column [Å]."""
        index = np.mod(index, shape)
        ideal = (index + ideal_offset) * a_A
        offset = _wrap(xy[mask] - ideal, length)
        total = np.zeros((nx, ny, 2))
        count = np.zeros((nx, ny))
        np.add.at(total, (index[:, 0], index[:, 1]), offset)
        np.add.at(count, (index[:, 0], index[:, 1]), 1)
        if np.any(count == 0):
            raise ValueError(f"{int(np.sum(count == 0))} {what} columns have no atom; "
                             f"valid: one column per cell")
        grid = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"), axis=-1)
        return (grid + ideal_offset) * a_A + total / count[..., None]

    b_sites = (b_site,) if isinstance(b_site, str) else tuple(b_site)
    b_mask = np.isin(symbols, list(b_sites))
    b_wrapped = np.mod(xy[b_mask], length)
    b_col = columns(b_mask, np.floor(b_wrapped / a_A).astype(int), 0.5, f"B ({b_site})")
    a_mask = np.isin(symbols, list(a_sites))
    a_col = columns(a_mask, np.rint(xy[a_mask] / a_A).astype(int), 0.0, "A")

    relative = np.zeros((nx, ny, 2))
    for di in (0, 1):
        for dj in (0, 1):
            corner = np.roll(a_col, (-di, -dj), axis=(0, 1))  # column (i + di, j + dj)
            expected = np.array([di - 0.5, dj - 0.5]) * a_A
            relative += expected + _wrap(corner - b_col - expected, length)
    return -relative / 4.0 * 100.0
