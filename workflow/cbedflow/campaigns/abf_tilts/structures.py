"""Tilted ABO3 perovskites in Glazer notation, built for ABF-STEM simulations.

A tilt system (Glazer 1972) names, per pseudocubic axis x, y, z, whether the
BO6 octahedra rotate about it and whether neighbours along that axis rotate
in phase (``+``) or in anti-phase (``-``); equal letters tie angles. The
angles alpha, beta, gamma [deg] are the rotations about x, y, z. The space
groups are those of Howard & Stokes (1998), Acta Cryst. B54, 782.

Construction (:func:`build_tilted_perovskite`)
----------------------------------------------
The cell is a 2x2x2 pseudocubic supercell (8 A, 8 B, 24 O) with an
*orthogonal* cell of three free lengths, because abTEM's potentials need an
orthogonal cell.

1. Octahedron ``n = (i, j, k)`` gets the rotation vector
   ``omega_n = (s_x alpha, s_y beta, s_z gamma)`` (``R_n = exp([omega_n]x)``).
   The sign ``s_u`` of the tilt about axis u flips between neighbours along
   the two axes perpendicular to u, always; along u it is constant for
   ``+`` and flips for ``-``. A rotation *vector* (not a product of three
   Euler rotations) has no order of x, y, z, so the pattern keeps every
   symmetry the tilt system has (the 3-fold axis of a-a-a- and a+a+a+).
2. B sits on the pseudocubic lattice ``n * a_pc``: B is a centre of inversion
   without free coordinates in all these space groups. There is one O per
   B-B link, shared by the two octahedra, placed on the link's bisecting
   plane at ``rho_u`` from the link: ``O = midpoint + rho_u (cos t, sin t)``
   in that plane, with ``a_u = 2 sqrt(bond^2 - rho_u^2)``. Every B-O
   distance therefore equals ``bond_length_A`` exactly, by construction.
3. Rigid rotations about several axes do not always close around the loops
   of shared corners in an orthogonal cell. :func:`scipy.optimize.least_squares`
   solves for the ``t`` of each O and the ``rho_u`` of each axis (hence the
   cell lengths): it minimises the cis O-B-O residuals ``v_i . v_j / bond``
   (90 deg, regularity) subject to each octahedron's measured (Kabsch)
   rotation being ``R_n``, imposed by a stiff penalty on the antisymmetric
   part of ``R_n^T sum_i v_i e_i^T``. So the drawn angles are the
   structure's angles (to < 1e-5 deg, checked) and the octahedra are as
   regular as the cell allows. The start (each O at the mean of its two
   octahedra's rigid positions) is symmetric and the Gauss-Newton steps are
   equivariant, so the space group is kept.
4. A cations sit at the centroid of their 8 nearest B, the pseudocubic
   A site ``(n + 1/2) a_pc``. That is exact by symmetry for a0a0a0, a0a0c-,
   a0a0c+, a-a-a- and a+a+a+ (A on fixed special positions); in Imma and
   Pnma real A cations shift off it (by 0.1-0.3 Å in e.g. CaTiO3), which
   this model leaves out.

What the orthogonal cell costs
------------------------------
a0a0a0, a0a0c-, a0a0c+ and a+a+a+ close exactly with regular octahedra in
an orthogonal cell (a+a+a+ with the rotation-vector pattern above: every
shared O sits where both its rigid octahedra put it). The true metric of
a-a-a- (R-3c) is rhombohedral (pseudocubic angle below 90 deg), and that of
a0b-b- (Imma) and a-b+a- (Pnma) has a monoclinic pseudocubic angle; with
90 deg imposed their octahedra bend, by about the square of the tilt:
max |O-B-O - ideal| = 1.1 deg at 8 deg tilts, 3.9 deg at 15, 6.9 deg at 20
(a-b+a- at 20 deg: 8.0 deg). B-O lengths stay exact (bond
bending is far softer than stretching). ``atoms.info["max_obo_deviation_deg"]``
records the value of each structure.

Projections (:func:`projected_110`, :func:`projected_100`)
-----------------------------------------------------------
The same crystal in an orthogonal cell with the beam along z: for [110]pc
the cell vectors are [001]pc (x), [1-10]pc (y) and [110]pc (z, the beam) of
the 2x2x2 cell (``ase.build.make_supercell``, then a proper rotation), so
the in-plane cell tiles the image periodically. When the two pseudocubic
lengths of the zone differ (a0b-b-: x != y = z; a-b+a-: x = z != y) no
small orthogonal cell contains the zone axis; they are then made equal by
a homogeneous strain (recorded in ``info["strain_pc"]``, refused above
``max_strain``): prefer the zone of that family whose lengths are equal
(``"011"`` for a0b-b-, ``"101"`` for a-b+a-), which needs none.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # ase/scipy are imported where atoms are built: the
    from ase import Atoms  # training environment reads GLAZER without them

#: Tilt angles are accepted in [0, MAX_TILT_DEG] degrees.
MAX_TILT_DEG = 20.0

#: Ti-O bond length of cubic SrTiO3 [Å] (a = 3.905 Å).
BOND_LENGTH_SRTIO3_A = 1.9525

ANGLE_NAMES = ("alpha", "beta", "gamma")
AXES = ("x", "y", "z")

#: Pseudocubic sites (i, j, k) of the 2x2x2 supercell; octahedron b sits at SITES[b].
SITES = np.array(list(itertools.product((0, 1), repeat=3)))

# Vertex order of an octahedron: +x, -x, +y, -y, +z, -z (unit vectors).
_VERTEX_DIRS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0],
                         [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
# The 12 cis vertex pairs (vertices on different axes).
_CIS = np.array([(p, q) for p in range(6) for q in range(p + 1, 6) if p // 2 != q // 2])
_TRANS = np.array([(0, 1), (2, 3), (4, 5)])
# In-plane basis (e_v, e_w) of the plane perpendicular to axis u (cyclic).
_PERP = ((1, 2), (2, 0), (0, 1))

_NOTATION = re.compile(r"^([abc])([0+-])([abc])([0+-])([abc])([0+-])$")


def _site_index(n: np.ndarray) -> int:
    i, j, k = np.mod(n, 2)
    return int(4 * i + 2 * j + k)


# O of link (site b, axis u) sits between B_b and B_{b + e_u}; its index is 3 b + u.
# An octahedron's +u vertex is O(b, u), its -u vertex O(b - e_u, u).
_VERTEX_O = np.array([
    [3 * (b if sign > 0 else _site_index(SITES[b] - np.eye(3, dtype=int)[u])) + u
     for u in range(3) for sign in (1, -1)]
    for b in range(8)])


@dataclass(frozen=True)
class GlazerSystem:
    """One Glazer tilt system.

    Parameters
    ----------
    name : str
        Glazer symbol, e.g. ``"a-b+a-"``: letter and phase per axis x, y, z.
    phases : tuple of str
        Per axis x, y, z: ``"+"`` (in-phase), ``"-"`` (anti-phase) or ``"0"``
        (untilted).
    ties : tuple of tuple of int
        Groups of tilted axes (0 = x, 1 = y, 2 = z) whose angles are equal;
        one free angle per group, e.g. ``((0, 2), (1,))`` for a-b+a-
        (alpha = gamma, beta).
    spacegroup_number : int
        International Tables number of the tilted structure (all free angles
        non-zero).
    spacegroup_symbol : str
        Hermann-Mauguin symbol of that space group.
    """

    name: str
    phases: tuple[str, str, str]
    ties: tuple[tuple[int, ...], ...]
    spacegroup_number: int
    spacegroup_symbol: str

    @classmethod
    def from_notation(cls, name: str, number: int, symbol: str) -> GlazerSystem:
        """Parse a Glazer symbol (letters tie angles, signs give phases)."""
        m = _NOTATION.match(name)
        if m is None:
            raise ValueError(f"Glazer symbol {name!r} is not of the form a-b+a- "
                             "(letter a/b/c then 0/+/- for each of x, y, z)")
        letters, phases = m.groups()[0::2], m.groups()[1::2]
        groups: dict[str, list[int]] = {}
        for u, (letter, phase) in enumerate(zip(letters, phases)):
            if phase != "0":
                groups.setdefault(letter, []).append(u)
        return cls(name, tuple(phases), tuple(tuple(g) for g in groups.values()), number, symbol)

    @property
    def tilted(self) -> tuple[bool, bool, bool]:
        """Whether the octahedra rotate about x, y, z."""
        return tuple(p != "0" for p in self.phases)

    @property
    def n_free(self) -> int:
        """Number of independent tilt angles."""
        return len(self.ties)

    @property
    def free_names(self) -> tuple[str, ...]:
        """Name of each free angle, e.g. ``("alpha=gamma", "beta")``."""
        return tuple("=".join(ANGLE_NAMES[u] for u in g) for g in self.ties)

    def angles(self, free_deg: Sequence[float]) -> tuple[float, float, float]:
        """(alpha, beta, gamma) [deg] from the free angles (one per tie group).

        Parameters
        ----------
        free_deg : sequence of float
            One angle [deg] per entry of :attr:`ties`, in [0, 20].
        """
        free = np.atleast_1d(np.asarray(free_deg, dtype=float))
        if free.shape != (self.n_free,):
            raise ValueError(f"{self.name} takes {self.n_free} free angle(s) "
                             f"({', '.join(self.free_names) or 'none'}), got {list(free)}")
        out = [0.0, 0.0, 0.0]
        for g, value in zip(self.ties, free):
            for u in g:
                out[u] = float(value)
        return self.check_angles(out)

    def check_angles(self, angles_deg: Sequence[float]) -> tuple[float, float, float]:
        """Validate (alpha, beta, gamma) [deg] for this system and return them.

        Raises
        ------
        ValueError
            An angle outside [0, 20] deg, non-zero about an untilted axis, or
            tied angles that differ.
        """
        a = np.asarray(angles_deg, dtype=float)
        if a.shape != (3,):
            raise ValueError(f"angles_deg={angles_deg!r} must be (alpha, beta, gamma) in deg")
        for u, value in enumerate(a):
            if not (np.isfinite(value) and 0.0 <= value <= MAX_TILT_DEG):
                raise ValueError(f"{ANGLE_NAMES[u]}={value:g} deg is outside "
                                 f"[0, {MAX_TILT_DEG:g}] deg")
            if not self.tilted[u] and value != 0.0:
                raise ValueError(f"{ANGLE_NAMES[u]}={value:g} deg about untilted axis "
                                 f"{AXES[u]} of {self.name}: must be 0")
        for g in self.ties:
            if np.ptp(a[list(g)]) > 0.0:
                given = ", ".join(f"{ANGLE_NAMES[u]}={a[u]:g}" for u in g)
                raise ValueError(f"{given} deg differ but {self.name} ties "
                                 f"{'='.join(ANGLE_NAMES[u] for u in g)}")
        return tuple(float(x) for x in a)

    def draw(self, rng: np.random.Generator, lo_deg: float = 0.0,
             hi_deg: float = 15.0) -> tuple[float, float, float]:
        """Draw (alpha, beta, gamma) [deg]: each free angle uniform in [lo, hi].

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (same seed, same angles).
        lo_deg, hi_deg : float
            Range [deg], within [0, 20]. Untilted axes get 0.
        """
        if not 0.0 <= lo_deg <= hi_deg <= MAX_TILT_DEG:
            raise ValueError(f"tilt range [{lo_deg:g}, {hi_deg:g}] deg is not within "
                             f"[0, {MAX_TILT_DEG:g}] deg with lo <= hi")
        return self.angles(rng.uniform(lo_deg, hi_deg, size=self.n_free))

    def signs(self) -> np.ndarray:
        """Tilt sign pattern, shape (8, 3): sign of the rotation about x, y, z
        of the octahedron at each of :data:`SITES` (0 where untilted)."""
        out = np.zeros((8, 3))
        for u, phase in enumerate(self.phases):
            if phase == "0":
                continue
            perp = SITES[:, list(_PERP[u])].sum(axis=1)
            along = SITES[:, u] if phase == "-" else 0
            out[:, u] = (-1.0) ** (perp + along)
        return out


#: The tilt systems by Glazer symbol, with their space groups (Howard & Stokes 1998).
GLAZER: dict[str, GlazerSystem] = {
    s.name: s for s in (
        GlazerSystem.from_notation("a0a0a0", 221, "Pm-3m"),
        GlazerSystem.from_notation("a0a0c+", 127, "P4/mbm"),
        GlazerSystem.from_notation("a0a0c-", 140, "I4/mcm"),
        GlazerSystem.from_notation("a0b-b-", 74, "Imma"),
        GlazerSystem.from_notation("a-a-a-", 167, "R-3c"),
        GlazerSystem.from_notation("a-b+a-", 62, "Pnma"),
        GlazerSystem.from_notation("a+a+a+", 204, "Im-3"),
    )
}


def glazer_system(system: str | GlazerSystem) -> GlazerSystem:
    """The :class:`GlazerSystem` for a symbol in :data:`GLAZER` (or itself)."""
    if isinstance(system, GlazerSystem):
        return system
    if system not in GLAZER:
        raise ValueError(f"unknown Glazer system {system!r}; valid: {', '.join(GLAZER)}")
    return GLAZER[system]


def _rotations(omega: np.ndarray) -> np.ndarray:
    """Rotation matrices (8, 3, 3) from rotation vectors (8, 3) [rad]."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(omega).as_matrix()


def _kabsch_rotvecs(vertices: np.ndarray) -> np.ndarray:
    """Rotation vectors [rad] (n, 3) of the best rotations of the ideal
    octahedron onto ``vertices`` (n, 6, 3), in :data:`_VERTEX_DIRS` order."""
    from scipy.spatial.transform import Rotation

    return np.array([Rotation.align_vectors(v, _VERTEX_DIRS)[0].as_rotvec() for v in vertices])


def _octahedron_angles(vertices: np.ndarray) -> np.ndarray:
    """|O-B-O - ideal| [deg] of the cis (90) and trans (180) pairs, (n, 15)."""
    def angle(pairs):  # atan2 keeps its precision near 180 deg
        v, w = vertices[:, pairs[:, 0]], vertices[:, pairs[:, 1]]
        return np.degrees(np.arctan2(np.linalg.norm(np.cross(v, w), axis=-1),
                                     np.einsum("nij,nij->ni", v, w)))

    return np.concatenate([np.abs(angle(_CIS) - 90.0), np.abs(angle(_TRANS) - 180.0)], axis=1)


class _Framework:
    """Corner-sharing octahedra of the 2x2x2 cell with exact B-O bonds.

    Parameters: ``rho`` (3,) off-link distance of the O of each axis [Å] and
    ``t`` (24,) direction of each O in its link's bisecting plane [rad].
    """

    def __init__(self, bond: float, active: np.ndarray):
        self.bond = bond
        self.active = active  # axes whose O leave the link (rho > 0)
        self.o_axis = np.tile(np.arange(3), 8)  # axis of O index 3 b + u
        self.free_o = np.flatnonzero(active[self.o_axis])

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rho = np.zeros(3)
        rho[self.active] = x[:self.active.sum()]
        t = np.zeros(24)
        t[self.free_o] = x[self.active.sum():]
        return rho, t

    def pack(self, rho: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.concatenate([rho[self.active], t[self.free_o]])

    def pc_lengths(self, rho: np.ndarray) -> np.ndarray:
        """Pseudocubic B-B spacings (3,) [Å]."""
        return 2.0 * np.sqrt(self.bond ** 2 - rho ** 2)

    def offsets(self, rho: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Off-link displacement of every O (24, 3) [Å]."""
        out = np.zeros((24, 3))
        for u, (v, w) in enumerate(_PERP):
            sel = self.o_axis == u
            out[sel, v] = rho[u] * np.cos(t[sel])
            out[sel, w] = rho[u] * np.sin(t[sel])
        return out

    def vertices(self, rho: np.ndarray, t: np.ndarray) -> np.ndarray:
        """B->O vectors (8, 6, 3) [Å] of each octahedron."""
        half = 0.5 * self.pc_lengths(rho)[None, :] * _VERTEX_DIRS  # (6, 3)
        return half[None] + self.offsets(rho, t)[_VERTEX_O]

    def residuals(self, x: np.ndarray, rotations: np.ndarray, weight: float) -> np.ndarray:
        """Cis O-B-O residuals ``v_i . v_j / bond`` [Å] (8 x 12), then
        ``weight`` times the rotation mismatch of each octahedron (8 x 3).

        The Kabsch rotation of an octahedron is ``R`` iff ``R^T M`` with
        ``M = sum_i v_i e_i^T`` is symmetric (positive definite), so the
        antisymmetric part of ``R^T M / (2 bond)`` (~ the angle [rad] between
        the two) vanishes when the measured rotation is the nominal one.
        """
        v = self.vertices(*self.unpack(x))
        cis = np.einsum("nij,nij->ni", v[:, _CIS[:, 0]], v[:, _CIS[:, 1]]) / self.bond
        a = np.einsum("nki,npk,pj->nij", rotations, v, _VERTEX_DIRS) / (2.0 * self.bond)
        skew = 0.5 * np.stack([a[:, 2, 1] - a[:, 1, 2], a[:, 0, 2] - a[:, 2, 0],
                               a[:, 1, 0] - a[:, 0, 1]], axis=1)
        return np.concatenate([cis.ravel(), weight * skew.ravel()])

    def start(self, targets: np.ndarray) -> np.ndarray:
        """Each O at the mean of its two octahedra's rigid positions."""
        acc = np.zeros((24, 3))
        for b in range(8):
            for p in range(6):
                acc[_VERTEX_O[b, p]] += 0.5 * targets[b, p]
        rho, t = np.zeros(3), np.zeros(24)
        for u, (v, w) in enumerate(_PERP):
            sel = self.o_axis == u
            rho[u] = np.hypot(acc[sel, v], acc[sel, w]).mean()
            t[sel] = np.arctan2(acc[sel, w], acc[sel, v])
        return self.pack(rho, t)


def build_tilted_perovskite(
    system: str | GlazerSystem,
    angles_deg: Sequence[float],
    a_site: str = "Sr",
    b_site: str = "Ti",
    bond_length_A: float = BOND_LENGTH_SRTIO3_A,
    *,
    rotation_weight: float = 1e4,
    tilt_tol_deg: float = 1e-5,
) -> Atoms:
    """Build a tilted ABO3 perovskite, 2x2x2 pseudocubic, orthogonal cell.

    Parameters
    ----------
    system : str or GlazerSystem
        Glazer symbol, a key of :data:`GLAZER`.
    angles_deg : sequence of 3 float
        (alpha, beta, gamma): tilts about x, y, z [deg], each in [0, 20];
        0 about untilted axes, tied angles equal (see
        :meth:`GlazerSystem.angles` to expand free angles).
    a_site, b_site : str
        Chemical symbols of the A and B cations.
    bond_length_A : float
        B-O bond length [Å]; the untilted cell is 2 x (2 bond).
    rotation_weight : float
        Penalty weight [Å/rad] that holds each octahedron's measured rotation
        at the nominal one, against the O-B-O regularity residuals [Å].
    tilt_tol_deg : float
        Largest accepted |measured - nominal| rotation component [deg];
        above it a RuntimeError is raised.

    Returns
    -------
    ase.Atoms
        40 atoms (8 A, 8 B, 24 O; B then its 3 O per site, then A), cell
        ``diag(2 a_x, 2 a_y, 2 a_z)`` [Å], pbc. ``info``: ``glazer``,
        ``alpha_deg``/``beta_deg``/``gamma_deg`` (nominal),
        ``tilts_measured_deg`` (8, 3) rotation-vector components per B,
        ``pc_lengths_A`` (3,), ``max_bo_deviation_A``,
        ``max_obo_deviation_deg``, ``min_ao_distance_A`` (A at the B
        centroid comes close to O at large tilts: 2.3 Å at 8 deg, 1.4-1.6 Å
        at 20 deg), ``spacegroup_number`` (expected), ``a_site``, ``b_site``,
        ``bond_length_A``.
    """
    from ase import Atoms
    from ase.data import atomic_numbers
    from ase.neighborlist import neighbor_list
    from scipy.optimize import least_squares

    gs = glazer_system(system)
    angles = gs.check_angles(angles_deg)
    if not (np.isfinite(bond_length_A) and 1.0 <= bond_length_A <= 3.0):
        raise ValueError(f"bond_length_A={bond_length_A!r} Å is outside [1, 3] Å")
    for role, symbol in (("a_site", a_site), ("b_site", b_site)):
        if symbol not in atomic_numbers or symbol == "O":
            raise ValueError(f"{role}={symbol!r} is not a cation's chemical symbol "
                             "(e.g. 'Sr', 'Ti')")
    if a_site == b_site:
        raise ValueError(f"a_site={a_site!r} equals b_site; the A and B cations must differ")
    d = float(bond_length_A)
    nominal = gs.signs() * np.radians(angles)  # (8, 3) rotation vectors
    ang = np.asarray(angles)
    # O of axis u leave their link iff a perpendicular tilt is non-zero.
    active = np.array([ang[list(_PERP[u])].any() for u in range(3)])
    fw = _Framework(d, active)

    rotations = _rotations(nominal)
    x = fw.start(d * np.einsum("nij,pj->npi", rotations, _VERTEX_DIRS))
    if x.size:
        # Variable scales: rho in Å, t in rad times rho (arc length in Å).
        rho0 = fw.unpack(x)[0]
        scale = fw.pack(np.ones(3), 1.0 / np.maximum(rho0[fw.o_axis], 1e-3))
        x = least_squares(fw.residuals, x, args=(rotations, rotation_weight), method="trf",
                          x_scale=scale, ftol=1e-15, xtol=1e-15, gtol=1e-15).x
    measured = _kabsch_rotvecs(fw.vertices(*fw.unpack(x)))
    off = np.degrees(np.abs(measured - nominal)).max()
    if off > tilt_tol_deg:
        raise RuntimeError(f"{gs.name} at {angles} deg: measured tilts stay {off:.2g} deg "
                           f"off the nominal ones (tolerance {tilt_tol_deg:g} deg)")
    rho, t = fw.unpack(x)
    a_pc = fw.pc_lengths(rho)
    verts = fw.vertices(rho, t)
    b_pos = SITES * a_pc
    o_pos = np.repeat(b_pos, 3, axis=0) + 0.5 * np.tile(np.diag(a_pc), (8, 1)) + fw.offsets(rho, t)
    a_pos = (SITES + 0.5) * a_pc
    symbols = [s for _ in range(8) for s in (b_site, "O", "O", "O")] + [a_site] * 8
    b_with_o = np.concatenate([b_pos[:, None], o_pos.reshape(8, 3, 3)], axis=1)
    positions = np.concatenate([b_with_o.reshape(32, 3), a_pos])
    atoms = Atoms(symbols=symbols, positions=positions, cell=np.diag(2 * a_pc), pbc=True)
    atoms.wrap()
    atoms.info.update(
        glazer=gs.name,
        alpha_deg=angles[0], beta_deg=angles[1], gamma_deg=angles[2],
        tilts_measured_deg=np.degrees(measured),
        pc_lengths_A=a_pc,
        max_bo_deviation_A=float(np.abs(np.linalg.norm(verts, axis=-1) - d).max()),
        max_obo_deviation_deg=float(_octahedron_angles(verts).max()),
        spacegroup_number=gs.spacegroup_number,
        a_site=a_site, b_site=b_site, bond_length_A=d,
    )
    i, j, dist = neighbor_list("ijd", atoms, 2.0 * d)
    numbers = atoms.numbers
    ao = (numbers[i] == atomic_numbers[a_site]) & (numbers[j] == 8)
    atoms.info["min_ao_distance_A"] = float(dist[ao].min())
    return atoms


#: Zone axes: rows are the new x, y and z (the beam) as pseudocubic directions
#: of the 2x2x2 cell (right-handed; the beam is the last row).
ZONES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "100": ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    "010": ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    "001": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "110": ((0, 0, 1), (1, -1, 0), (1, 1, 0)),
    "011": ((1, 0, 0), (0, 1, -1), (0, 1, 1)),
    "101": ((0, 1, 0), (-1, 0, 1), (1, 0, 1)),
}


def _zone_strain(lengths: np.ndarray, zone: str) -> np.ndarray:
    """Strain (3,) that makes the lengths each zone row mixes equal (rms kept)."""
    target = np.array(lengths, dtype=float)
    for row in ZONES[zone]:
        mixed = np.flatnonzero(row)
        if mixed.size > 1 and np.ptp(target[mixed]) > 1e-12 * target[mixed].max():
            target[mixed] = np.sqrt(np.mean(target[mixed] ** 2))
    return target / lengths - 1.0


def measure_tilts(atoms: Atoms, b_site: str | None = None) -> np.ndarray:
    """Rotation of every BO6 octahedron about the pseudocubic x, y, z [deg].

    Each octahedron's 6 O (nearest, within 1.25 bond lengths, minimum image)
    are matched to the ideal vertices +-x, +-y, +-z; the best rotation
    (Kabsch, :meth:`scipy.spatial.transform.Rotation.align_vectors`) is
    returned as its *rotation vector* (axis times angle), whose components
    are the tilts alpha, beta, gamma with their signs. This is the convention
    :func:`build_tilted_perovskite` builds with (no Euler order involved).

    Parameters
    ----------
    atoms : ase.Atoms
        A structure from :func:`build_tilted_perovskite` or a projection of
        it (``info["pc_to_lab"]`` turns lab vectors back into pseudocubic).
    b_site : str, optional
        Symbol of the B cation; default ``atoms.info["b_site"]``.

    Returns
    -------
    numpy.ndarray
        Shape (n_B, 3), rows in the order of the B atoms in ``atoms``.
    """
    from ase.neighborlist import neighbor_list

    b_site = b_site or atoms.info.get("b_site")
    symbols = np.array(atoms.get_chemical_symbols())
    if b_site is None or not (symbols == b_site).any():
        raise ValueError(f"b_site={b_site!r} is not among the atoms' symbols "
                         f"{sorted(set(symbols))}")
    cutoff = 1.25 * float(atoms.info.get("bond_length_A", BOND_LENGTH_SRTIO3_A))
    i, j, vec = neighbor_list("ijD", atoms, cutoff)
    keep = (symbols[i] == b_site) & (symbols[j] == "O")
    i, vec = i[keep], vec[keep] @ np.asarray(atoms.info.get("pc_to_lab", np.eye(3)))
    octahedra = []
    for b in np.flatnonzero(symbols == b_site):
        v = vec[i == b]
        axis = np.argmax(np.abs(v), axis=1)
        slot = 2 * axis + (v[np.arange(len(v)), axis] < 0)
        if sorted(slot) != list(range(6)):
            raise ValueError(f"{b_site} atom {b} has {len(v)} O within {cutoff:.2f} Å, "
                             "not one at each of +-x, +-y, +-z")
        ordered = np.empty((6, 3))
        ordered[slot] = v
        octahedra.append(ordered)
    return np.degrees(_kabsch_rotvecs(np.array(octahedra)))


def project(atoms: Atoms, zone: str = "110", repeat_along_beam: int = 1, *,
            max_strain: float = 0.01) -> Atoms:
    """The structure in an orthogonal cell with the beam along z.

    Parameters
    ----------
    atoms : ase.Atoms
        A 2x2x2 pseudocubic structure with a diagonal cell, e.g. from
        :func:`build_tilted_perovskite`.
    zone : str
        Beam direction, a key of :data:`ZONES` (``"110"``: [110]pc).
    repeat_along_beam : int
        Copies of the zone cell along the beam (z), >= 1.
    max_strain : float
        Largest homogeneous strain (dimensionless) accepted to make the two
        pseudocubic lengths of a [110]-type zone equal.

    Returns
    -------
    ase.Atoms
        Diagonal (orthogonal) cell, pbc; ``info`` as the input's plus
        ``zone``, ``pc_to_lab`` (3, 3) rotation (lab = pc_to_lab @ pc),
        ``strain_pc`` (3,), ``repeat_along_beam``, ``thickness_A`` [Å].
    """
    from ase import Atoms
    from ase.build import make_supercell

    if zone not in ZONES:
        raise ValueError(f"zone={zone!r} is unknown; valid: {', '.join(ZONES)}")
    if isinstance(repeat_along_beam, bool) or not isinstance(repeat_along_beam, (int, np.integer)) \
            or repeat_along_beam < 1:
        raise ValueError(f"repeat_along_beam={repeat_along_beam!r} must be an integer >= 1")
    cell = atoms.cell.array
    lengths = np.diag(cell).copy()
    if np.abs(cell - np.diag(lengths)).max() > 1e-9:
        raise ValueError("atoms.cell is not diagonal (pseudocubic axes along x, y, z)")
    strain = _zone_strain(lengths, zone)
    if np.abs(strain).max() > max_strain:
        same = [z for z in ZONES if np.abs(_zone_strain(lengths, z)).max() <= max_strain
                and sorted(map(abs, ZONES[z][2])) == sorted(map(abs, ZONES[zone][2]))]
        raise ValueError(f"zone {zone} needs strain {np.abs(strain).max():.3g} > "
                         f"max_strain={max_strain:g} (pseudocubic cell {np.round(lengths, 4)} Å); "
                         f"zones of this family that fit: {', '.join(same) or 'none'}")
    strained = atoms.copy()
    strained.set_cell(np.diag(lengths * (1.0 + strain)), scale_atoms=True)
    sc = make_supercell(strained, np.array(ZONES[zone]))
    norms = np.linalg.norm(sc.cell.array, axis=1)
    to_lab = sc.cell.array / norms[:, None]  # rows: lab x, y, z in pc coordinates
    out = Atoms(sc.get_chemical_symbols(), positions=sc.positions @ to_lab.T,
                cell=np.diag(norms), pbc=True)
    out.wrap()
    out = out.repeat((1, 1, int(repeat_along_beam)))
    out.info.update(atoms.info)
    out.info.update(zone=zone, pc_to_lab=to_lab, strain_pc=strain,
                    repeat_along_beam=int(repeat_along_beam), thickness_A=float(out.cell[2, 2]))
    return out


def projected_110(atoms: Atoms, repeat_along_beam: int = 1, *, max_strain: float = 0.01) -> Atoms:
    """[110]pc projection (x = [001]pc, y = [1-10]pc, beam z = [110]pc); see :func:`project`."""
    return project(atoms, "110", repeat_along_beam, max_strain=max_strain)


def projected_100(atoms: Atoms, repeat_along_beam: int = 1) -> Atoms:
    """[100]pc projection (x = [010]pc, y = [001]pc, beam z = [100]pc); see :func:`project`."""
    return project(atoms, "100", repeat_along_beam)
