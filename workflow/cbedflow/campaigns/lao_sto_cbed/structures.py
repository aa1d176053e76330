"""LaAlO3/SrTiO3 interface cross-sections built with ASE.

This is the only module that holds LAO/STO constants. Other campaigns plug in
their own structure module with the same contract: a builder that returns an
:class:`ase.Atoms` whose ``info`` carries the labels and the geometry that the
simulation needs (``scan_x0_A``, the x coordinate where the scan starts).

Axes (as in Oxley et al.):

* x: growth direction [001], across the interface (periodic; a SrO cap closes it),
* y: along the interface, the cell tiled ``y_repeats`` times,
* z: beam direction, the sample thickness.

Plane sequence along x, each plane a/2 apart::

    TiO2 | (SrO TiO2) x n_substrate | (LaO AlO2) x n_film | SrO(cap) | -> TiO2 ...

so that AO and BO2 planes alternate across the periodic boundary too. The
terminating TiO2 plane of the substrate is at ``x0 = n_substrate * a``.

Classes
-------
``step`` (rough)
    For depths z < d (from the beam-entrance surface) the first film unit cell
    is replaced by substrate (the interface sits one cell further along x);
    for z >= d it is flat. d = k/10 of the thickness, rounded to whole unit
    cells along z; ``k`` (0..10) is the step-position label. k = 0 and k = 10
    are flat interfaces (k = 10 shifted by one cell). What lies above the
    step is the geometry's ``step_model`` (:data:`STEP_MODELS`): ``flat_top``
    (the paper's) keeps the film's top where it is, so over the step the film
    is one cell thinner; ``conformal`` moves the whole stack (substrate, film
    and cap) by one cell, as a film grown layer by layer over a substrate
    terrace step, so k = 10 is k = 0 translated by exactly one cell.
``diffuse``
    A flat interface; a fraction f of the Al in the first AlO2 plane is
    replaced by Ti at random, seeded sites; optionally decaying into the next
    AlO2 planes by ``decay`` per plane.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # ase is imported where atoms are built: the training
    from ase import Atoms  # environment reads this module's constants without it

#: Pseudo-cubic lattice parameter of SrTiO3 [Å]. The LAO film is taken as
#: coherently strained to the substrate, so the whole cell uses this value.
A_STO = 3.905

#: What lies above a buried step (:class:`InterfaceGeometry` ``step_model``):
#: ``flat_top`` replaces the first film cell by substrate (the paper's
#: structures: over the step the film is one cell thinner, so k = 10 is not a
#: translation of k = 0 unless the film is much thicker than the scan
#: window); ``conformal`` translates the whole periodic stack by one cell
#: along x (the film follows the terrace step, k = 10 is k = 0 moved one cell).
STEP_MODELS = ("flat_top", "conformal")

#: The step model of a config without ``structures.step_model`` (the paper's).
DEFAULT_STEP_MODEL = STEP_MODELS[0]


def without_default_step_model(d: dict) -> dict:
    """``d`` without its ``step_model`` key where that is the default: the
    form that structure keys, unit keys and stage parameters hash, so runs
    made before the option existed stay valid."""
    return {k: v for k, v in d.items()
            if not (k == "step_model" and v == DEFAULT_STEP_MODEL)}

#: Number of step-position classes (k = 0..10).
N_STEP_CLASSES = 11

#: The flat, abrupt interfaces among them: no step in the column (k = 0) or
#: the whole column past it (k = 10).
FLAT_STEP_CLASSES = (0, N_STEP_CLASSES - 1)

CLASSES = ("diffuse", "step")

#: Elements that appear in the structures (each needs a frozen-phonon sigma).
ELEMENTS = ("Sr", "Ti", "La", "Al", "O")

# (A-site, B-site) cations of each perovskite block.
_SUBSTRATE = ("Sr", "Ti")
_FILM = ("La", "Al")


@dataclass(frozen=True)
class InterfaceGeometry:
    """Geometry of the LAO/STO supercell.

    Parameters
    ----------
    n_substrate : int
        SrTiO3 unit cells along x below the terminating TiO2 plane.
    n_film : int
        LaAlO3 unit cells along x (LaO + AlO2 each).
    y_repeats : int
        Unit cells along y (the interface direction).
    a : float
        Lattice parameter [Å].
    step_model : str
        What lies above a buried step, one of :data:`STEP_MODELS`.
    """

    n_substrate: int = 2
    n_film: int = 2
    y_repeats: int = 5
    a: float = A_STO
    step_model: str = DEFAULT_STEP_MODEL

    def __post_init__(self):
        if self.step_model not in STEP_MODELS:
            raise ValueError(f"step_model {self.step_model!r} is not one of {STEP_MODELS}")

    @property
    def cells_x(self) -> int:
        """Unit cells along x, cap included."""
        return self.n_substrate + self.n_film + 1

    @property
    def extent_A(self) -> tuple[float, float]:
        """Cell size (x, y) [Å]."""
        return (self.cells_x * self.a, self.y_repeats * self.a)

    @property
    def interface_x_A(self) -> float:
        """x of the substrate's terminating TiO2 plane (flat interface) [Å]."""
        return self.n_substrate * self.a


def geometry_from_config(structures: dict) -> "InterfaceGeometry":
    """The supercell geometry of a validated ``structures`` config section
    (``y_repeats`` null: a square cell, as many cells along y as along x)."""
    s = structures
    n_x = s["n_substrate"] + s["n_film"] + 1
    return InterfaceGeometry(s["n_substrate"], s["n_film"], s["y_repeats"] or n_x,
                             step_model=s.get("step_model", DEFAULT_STEP_MODEL))


def thickness_cells(thickness_A: float, a: float = A_STO) -> int:
    """Whole unit cells along the beam for a nominal thickness [Å]."""
    return max(1, int(round(thickness_A / a)))


def step_depth_cells(k: int, nz: int) -> int:
    """Step depth in whole unit cells for step class ``k`` of ``nz`` cells."""
    if not 0 <= k < N_STEP_CLASSES:
        raise ValueError(f"step class k={k} is not in 0..{N_STEP_CLASSES - 1}")
    return int(round(k * nz / (N_STEP_CLASSES - 1)))


def _plane_sequence(geometry: InterfaceGeometry, shifted: bool) -> list[tuple[str, str]]:
    """(kind, cation) for every plane along x; kind is 'A' (AO) or 'B' (BO2).

    ``shifted`` replaces the first film cell by substrate (the buried step's
    upper part).
    """
    planes: list[tuple[str, str]] = [("B", _SUBSTRATE[1])]
    for _ in range(geometry.n_substrate):
        planes += [("A", _SUBSTRATE[0]), ("B", _SUBSTRATE[1])]
    for i in range(geometry.n_film):
        block = _SUBSTRATE if (shifted and i == 0) else _FILM
        planes += [("A", block[0]), ("B", block[1])]
    planes.append(("A", _SUBSTRATE[0]))  # SrO cap
    return planes


def _add_plane(
    symbols: list[str], positions: list[tuple[float, float, float]],
    kind: str, cation: str, x: float, ny: int, z_cells: range, a: float,
) -> None:
    """Append the atoms of one AO or BO2 plane over ``z_cells`` unit cells in z."""
    h = a / 2
    for iy in range(ny):
        y = iy * a
        for iz in z_cells:
            z = iz * a
            if kind == "A":  # AO: A at (0,0,0), O at (0,1/2,1/2)
                symbols += [cation, "O"]
                positions += [(x, y, z), (x, y + h, z + h)]
            else:  # BO2: B at (0,1/2,1/2), O at (0,0,1/2) and (0,1/2,0)
                symbols += [cation, "O", "O"]
                positions += [(x, y + h, z + h), (x, y, z + h), (x, y + h, z)]


def build_interface(
    geometry: InterfaceGeometry,
    nz: int,
    step_cells: int | None = None,
) -> Atoms:
    """Build a flat (``step_cells=None``) or stepped interface.

    Parameters
    ----------
    geometry : InterfaceGeometry
        Supercell geometry.
    nz : int
        Thickness in unit cells along the beam (z).
    step_cells : int, optional
        Depth of the buried step in unit cells from the entrance surface:
        cells ``0 .. step_cells-1`` carry the shifted interface (the first
        film cell made substrate for ``flat_top``, the whole stack moved one
        cell along x, wrapped into the periodic cell, for ``conformal``).
    """
    a = geometry.a
    lx, ly = geometry.extent_A
    symbols: list[str] = []
    positions: list[tuple[float, float, float]] = []
    d = 0 if step_cells is None else step_cells
    segments = [(range(0, d), True), (range(d, nz), False)]
    conformal = geometry.step_model == "conformal"
    for z_cells, shifted in segments:
        if len(z_cells) == 0:
            continue
        dx = a if (shifted and conformal) else 0.0
        planes = _plane_sequence(geometry, shifted and not conformal)
        for ip, (kind, cation) in enumerate(planes):
            _add_plane(symbols, positions, kind, cation, (ip * a / 2 + dx) % lx,
                       geometry.y_repeats, z_cells, a)
    from ase import Atoms

    atoms = Atoms(symbols=symbols, positions=positions, cell=[lx, ly, nz * a], pbc=True)
    atoms.info["scan_x0_A"] = geometry.interface_x_A
    atoms.info["unit_cell_A"] = a
    atoms.info["thickness_A"] = nz * a
    atoms.info["thickness_cells"] = nz
    return atoms


def film_b_planes_x(geometry: InterfaceGeometry) -> list[float]:
    """x [Å] of the film's AlO2 planes of a flat interface, nearest the interface first."""
    x0 = geometry.interface_x_A
    return [x0 + (i + 1) * geometry.a for i in range(geometry.n_film)]


def intermix(
    atoms: Atoms,
    geometry: InterfaceGeometry,
    fraction: float,
    decay: float,
    rng: np.random.Generator,
) -> list[float]:
    """Replace Al by Ti in the film's AlO2 planes, in place.

    Plane j (0 = first AlO2 plane at the interface) gets the fraction
    ``fraction * decay**j``, rounded to whole sites, at random sites drawn
    from ``rng``. Returns the realised fraction of every plane.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"intermixing fraction {fraction} is not in [0, 1]")
    symbols = np.array(atoms.get_chemical_symbols())
    x = atoms.positions[:, 0]
    realised = []
    for j, xp in enumerate(film_b_planes_x(geometry)):
        f = fraction * decay**j
        sites = np.flatnonzero((symbols == "Al") & np.isclose(x, xp, atol=1e-3))
        n = int(round(f * len(sites)))
        if n:
            chosen = rng.choice(sites, size=n, replace=False)
            symbols[chosen] = "Ti"
        realised.append(n / len(sites) if len(sites) else 0.0)
        if f * len(sites) < 0.5:
            break
    atoms.set_chemical_symbols(symbols.tolist())
    return realised


def realised_fractions(atoms: Atoms, geometry: InterfaceGeometry) -> list[float]:
    """Fraction of Ti on the B sites of each film AlO2 plane, nearest the
    interface first (the intermixing a sample actually holds)."""
    symbols = np.array(atoms.get_chemical_symbols())
    x = atoms.positions[:, 0]
    out = []
    for xp in film_b_planes_x(geometry):
        on = np.isclose(x, xp, atol=1e-3) & np.isin(symbols, ("Al", "Ti"))
        out.append(float(np.mean(symbols[on] == "Ti")) if on.any() else 0.0)
    return out


@dataclass(frozen=True)
class StructureSpec:
    """One structure of the campaign: its class and class parameters.

    Parameters
    ----------
    name : str
        Structure id, e.g. ``step-0003``.
    kind : str
        ``step`` or ``diffuse``.
    step_k : int
        Step-position class 0..10 (``-1`` for diffuse).
    fraction : float
        Intermixing fraction of the first AlO2 plane (0 for step).
    seed : int
        Seed of this structure's random choices.
    """

    name: str
    kind: str
    step_k: int
    fraction: float
    seed: int


def build_structure(
    spec: StructureSpec,
    geometry: InterfaceGeometry,
    thickness_A: float,
    decay: float = 0.0,
) -> Atoms:
    """Build ``spec`` at a nominal thickness [Å]; labels go to ``atoms.info``."""
    nz = thickness_cells(thickness_A, geometry.a)
    if spec.kind == "step":
        d = step_depth_cells(spec.step_k, nz)
        atoms = build_interface(geometry, nz, step_cells=d)
        realised = [0.0]
        depth = d * geometry.a
    elif spec.kind == "diffuse":
        atoms = build_interface(geometry, nz)
        # the thickness enters the seed so every thickness has its own sites
        rng = np.random.default_rng([spec.seed, nz])
        realised = intermix(atoms, geometry, spec.fraction, decay, rng)
        depth = -1.0  # no step
    else:
        raise ValueError(f"structure kind {spec.kind!r} is not one of {CLASSES}")
    atoms.info.update(
        structure=spec.name,
        kind=spec.kind,
        rough=int(spec.kind == "step"),
        step_k=spec.step_k,
        step_depth_A=depth,
        intermix_fraction=realised[0],
        nominal_fraction=spec.fraction,
        nominal_thickness_A=float(thickness_A),
    )
    return atoms


def series_compatible(spec: StructureSpec) -> bool:
    """True if ``spec``'s thinner samples can be the thickest one cut at their
    thickness with every label still true, so one propagation with exit
    planes gives the whole thickness series.

    Diffuse structures: yes (the cut keeps the class; the realised
    intermixing of each cut is recomputed). Step structures: only the flat
    ones, k = 0 and k = 10: a step at depth d of the thickest sample sits at
    d/t of a thinner one, a whole class only by accident, and beyond it when
    d > t.
    """
    if spec.kind == "diffuse":
        return True
    return spec.kind == "step" and spec.step_k in FLAT_STEP_CLASSES


def build_series(
    spec: StructureSpec,
    geometry: InterfaceGeometry,
    thicknesses_A: list[float],
    decay: float = 0.0,
) -> list[Atoms]:
    """``spec`` at every nominal thickness [Å] as cuts of the thickest sample
    (from the beam-entrance surface), thinnest first, labels in ``info``.

    Raises ValueError if ``spec`` is not :func:`series_compatible`. For the
    flat step classes the cuts are identical to :func:`build_structure` at
    each thickness; a diffuse cut holds the thickest sample's random sites
    in its first cells, with its own realised fraction.
    """
    if not series_compatible(spec):
        raise ValueError(f"structure {spec.name} (kind {spec.kind}, k={spec.step_k}) "
                         "cannot form a thickness series from one sample: its step "
                         "class would change with the thickness")
    order = sorted(thicknesses_A)
    thick = build_structure(spec, geometry, order[-1], decay)
    frames = []
    for t in order[:-1]:
        nz = thickness_cells(t, geometry.a)
        cut = thick[thick.positions[:, 2] < nz * geometry.a - 1e-6]
        cut.cell[2, 2] = nz * geometry.a
        cut.info = dict(thick.info)
        cut.info.update(thickness_A=nz * geometry.a, thickness_cells=nz,
                        nominal_thickness_A=float(t))
        if spec.kind == "step":
            cut.info["step_depth_A"] = step_depth_cells(spec.step_k, nz) * geometry.a
        else:
            cut.info["intermix_fraction"] = realised_fractions(cut, geometry)[0]
        frames.append(cut)
    return frames + [thick]


def campaign_structures(
    per_class: int,
    fraction_range: tuple[float, float],
    seed: int,
    step_classes: tuple[int, ...] = tuple(range(N_STEP_CLASSES)),
) -> list[StructureSpec]:
    """The campaign's structures: ``per_class`` of each class.

    Step structures cycle through ``step_classes`` (default k = 0..10) so
    that they are balanced; the intermixing fraction of each diffuse structure
    is drawn uniformly from ``fraction_range``. Every structure's seed and
    fraction derive from (``seed``, class, index) alone, so a structure stays
    the same when ``per_class`` grows: a bigger campaign adds structures and
    recomputes none.
    """
    specs = []
    for i in range(per_class):
        seed_i = int(np.random.SeedSequence([seed, 1, i]).generate_state(1)[0])
        specs.append(StructureSpec(f"step-{i:04d}", "step",
                                   step_classes[i % len(step_classes)], 0.0, seed_i))
    for i in range(per_class):
        ss = np.random.SeedSequence([seed, 0, i])
        fraction = np.random.default_rng(ss.spawn(1)[0]).uniform(*fraction_range)
        specs.append(StructureSpec(f"diffuse-{i:04d}", "diffuse", -1,
                                   round(float(fraction), 4), int(ss.generate_state(1)[0])))
    return specs
