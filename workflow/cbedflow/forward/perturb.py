"""Microscope and specimen imperfections that the ideal simulation leaves out.

One :class:`Perturbation` per *structure* (never per unit or phonon batch:
the units of one structure are averaged, so they must share one draw), drawn
from a seed stream of its own, derived from the campaign seed and the
structure's name (:func:`draw_perturbation`):

defocus
    added to abTEM's ``C10`` (abTEM sign: ``C10 = -defocus``) [Å].
spherical aberration Cs
    added to ``C30`` [Å]; configured in mm (1 mm = 1e7 Å).
mistilt
    abTEM's small-angle ``tilt`` of the probe [mrad]. abTEM 1.0.11 applies it
    to the Fresnel propagator only (``multislice._apply_tilt_to_fresnel_
    propagator_array``: a phase ``exp(-2 pi i k . tan(theta) dz)`` per
    slice), i.e. the wave moves laterally by ``dz tan(theta)`` in every slice
    relative to the potential: the specimen is *sheared*, not rotated. The
    incident probe (and so the bright-field disc on the detector) stays on
    the optic axis, as on a microscope whose beam is aligned but whose
    specimen is off the zone axis. Neglected: the tilt within one slice
    (each slice's projected potential is still projected along z; at 3 mrad
    and 1.95 Å slices the column moves 0.006 Å within a slice) and the
    cos(theta) change of the path length (4.5e-6 at 3 mrad).
source size
    partial spatial coherence: the CBED pattern of an extended incoherent
    source is the average of patterns of probes displaced by the source's
    demagnified image, a 2D Gaussian [Å, configured as its FWHM]. The average
    is taken jointly with the frozen-phonon average: configuration j of N
    sees every probe displaced by offset j of a centred, quasi-random
    N-point sample of the Gaussian (:func:`source_offsets_A`, a "sunflower"
    set at the radial quantiles, rotated by a per-structure random angle).
    No extra propagation; the error is that of an N-point quadrature of the
    Gaussian (docs/perturbations.md gives it against a 64-point reference).
thickness error
    a fraction ``u`` drawn uniformly in +-``thickness_fraction``, realised
    as ``round(u * n_cells)`` whole unit cells removed from or repeated at the
    *exit* surface (:func:`change_thickness`). The entrance side, where a
    step's depth is measured from, is untouched, so ``step_depth_A`` stays
    true; the thickness labels keep the nominal value (what the
    microscopist believes) and the realised one is recorded beside them.

With perturbations absent or ``enabled: false`` nothing here is called and
every unit is bit-identical to one simulated before this module existed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

#: Separates the perturbation stream from every other stream derived from the
#: campaign seed (phonon seeds use [seed, crc32(name), thickness_cells, j]).
STREAM_TAG = 0x7E57AB1E

#: Å per mm (Cs is configured in mm, abTEM's C30 is in Å).
A_PER_MM = 1e7

#: FWHM / sigma of a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Keys of ``simulation.perturbations`` and their off values.
DEFAULTS = {"enabled": False, "defocus_A": [0.0, 0.0], "cs_mm": [0.0, 0.0],
            "max_tilt_mrad": 0.0, "source_fwhm_A": [0.0, 0.0], "thickness_fraction": 0.0,
            "fraction": 1.0}


class PerturbationError(ValueError):
    """An invalid perturbation setting or use (one line)."""


def perturbation_config(config: dict) -> dict | None:
    """The ``simulation.perturbations`` section of ``config`` with defaults
    filled, or None when it is absent or ``enabled`` is false (nothing is
    perturbed and nothing about a unit changes)."""
    sec = (config.get("simulation") or {}).get("perturbations")
    if not sec or not sec.get("enabled", False):
        return None
    return {**DEFAULTS, **sec}


def strip_disabled(simulation: dict) -> dict:
    """``simulation`` without its ``perturbations`` key when they are off: the
    form that unit keys and stage parameters hash, so a config that has the
    section switched off hashes as one written before it existed."""
    if perturbation_config({"simulation": simulation}) is None:
        return {k: v for k, v in simulation.items() if k != "perturbations"}
    sec = simulation["perturbations"]
    if sec.get("fraction", 1.0) == 1.0:  # every structure perturbed: as before the key existed
        return {**simulation, "perturbations": {k: v for k, v in sec.items() if k != "fraction"}}
    return simulation


@dataclass(frozen=True)
class Perturbation:
    """The imperfections drawn for one structure.

    Parameters
    ----------
    defocus_A : float
        Defocus added to the probe [Å] (abTEM sign: C10 = -defocus).
    cs_mm : float
        Spherical aberration added to the probe [mm] (C30 += cs_mm * 1e7 Å).
    tilt_mrad : float
        Mistilt magnitude [mrad].
    tilt_azimuth_deg : float
        Mistilt direction in the (x, y) plane, from +x towards +y [degrees].
    source_fwhm_A : float
        FWHM of the Gaussian image of the source at the specimen [Å].
    source_rotation_deg : float
        Rotation of the quasi-random source-offset set [degrees].
    thickness_fraction : float
        Drawn fractional thickness error (realised in whole cells,
        :meth:`thickness_cells`).
    applied : bool
        False for a structure left ideal (``fraction`` < 1 of the structures
        are perturbed): every other field is then zero.
    """

    defocus_A: float = 0.0
    cs_mm: float = 0.0
    tilt_mrad: float = 0.0
    tilt_azimuth_deg: float = 0.0
    source_fwhm_A: float = 0.0
    source_rotation_deg: float = 0.0
    thickness_fraction: float = 0.0
    applied: bool = True

    @property
    def tilt_xy_mrad(self) -> tuple[float, float]:
        """Mistilt (x, y) components [mrad] (abTEM ``tilt``)."""
        phi = math.radians(self.tilt_azimuth_deg)
        return (self.tilt_mrad * math.cos(phi), self.tilt_mrad * math.sin(phi))

    def aberrations_A(self, base: dict) -> dict:
        """``base`` aberrations (abTEM polar notation [Å]) with the drawn
        defocus and Cs added: C10 -= defocus_A, C30 += cs_mm * 1e7."""
        out = dict(base)
        out["C10"] = float(out.get("C10", 0.0)) - self.defocus_A
        out["C30"] = float(out.get("C30", 0.0)) + self.cs_mm * A_PER_MM
        return out

    def thickness_cells(self, n_cells: int) -> int:
        """Whole cells added (> 0) or removed (< 0) at the exit surface of a
        sample of ``n_cells`` cells: round(thickness_fraction * n_cells),
        never leaving fewer than one cell."""
        return max(int(round(self.thickness_fraction * n_cells)), 1 - int(n_cells))

    def labels(self, n_cells: int, cell_A: float) -> dict:
        """The draw as flat ``perturb_*`` label values (units in the names)."""
        tx, ty = self.tilt_xy_mrad
        dc = self.thickness_cells(n_cells)
        return {"perturb_defocus_A": self.defocus_A, "perturb_cs_mm": self.cs_mm,
                "perturb_tilt_mrad": self.tilt_mrad, "perturb_tilt_x_mrad": tx,
                "perturb_tilt_y_mrad": ty, "perturb_source_fwhm_A": self.source_fwhm_A,
                "perturb_thickness_cells": dc,
                "perturb_thickness_A": (n_cells + dc) * cell_A,
                "perturbed": int(self.applied)}


def draw_perturbation(seed: int, structure: str, settings: dict) -> Perturbation:
    """The perturbation of ``structure``, from its own seed stream.

    The stream is ``SeedSequence([seed, crc32(structure), STREAM_TAG])``,
    independent of the thickness, the phonon batch and the other structures,
    so every unit of a structure gets the same draw. Seven uniforms are drawn
    in a fixed order whatever the ranges (a range of zero width gives its
    lower end), so switching one effect on does not change the others.

    Parameters
    ----------
    seed : int
        Campaign seed.
    structure : str
        Structure name.
    settings : dict
        ``simulation.perturbations`` (defaults filled): ``defocus_A`` and
        ``cs_mm`` and ``source_fwhm_A`` ranges [min, max] drawn uniformly;
        mistilt magnitude uniform in [0, ``max_tilt_mrad``] with a uniform
        azimuth; thickness fraction uniform in +-``thickness_fraction``;
        ``fraction``: the share of structures perturbed at all (an eighth
        uniform, drawn after the seven, decides: below ``fraction`` the
        structure gets the seven draws, else the ideal microscope with
        ``applied`` False), so a structure perturbed at fraction 0.5 has the
        draw it has at 1.
    """
    s = {**DEFAULTS, **settings}
    rng = np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(structure.encode()), STREAM_TAG]))
    u = rng.random(7)
    if float(rng.random()) >= float(s["fraction"]):
        return Perturbation(applied=False)

    def span(r, x):
        return float(r[0] + (r[1] - r[0]) * x)

    return Perturbation(
        defocus_A=span(s["defocus_A"], u[0]),
        cs_mm=span(s["cs_mm"], u[1]),
        tilt_mrad=float(s["max_tilt_mrad"]) * float(u[2]),
        tilt_azimuth_deg=360.0 * float(u[3]),
        source_fwhm_A=span(s["source_fwhm_A"], u[4]),
        source_rotation_deg=360.0 * float(u[5]),
        thickness_fraction=float(s["thickness_fraction"]) * (2.0 * float(u[6]) - 1.0),
    )


def source_offsets_A(fwhm_A: float, n: int, rotation_deg: float = 0.0) -> np.ndarray:
    """A centred N-point sample of a 2D Gaussian source image [Å], (n, 2).

    Point j sits at the radial quantile (j + 1/2)/n of the Gaussian
    (r_j = sigma sqrt(-2 ln(1 - (j + 1/2)/n))) and the golden angle times j
    plus ``rotation_deg``; the mean is subtracted so the set does not move the
    scan. ``fwhm_A`` = 0 gives n zero offsets.
    """
    if n < 1:
        raise PerturbationError(f"source offsets: n={n}; valid: >= 1")
    if fwhm_A < 0:
        raise PerturbationError(f"source FWHM {fwhm_A} Å; valid: >= 0")
    if fwhm_A == 0:
        return np.zeros((n, 2))
    sigma = fwhm_A / FWHM_PER_SIGMA
    j = np.arange(n)
    r = sigma * np.sqrt(-2.0 * np.log(1.0 - (j + 0.5) / n))
    phi = j * math.pi * (3.0 - math.sqrt(5.0)) + math.radians(rotation_deg)
    pts = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=-1)
    return pts - pts.mean(axis=0)


@dataclass(frozen=True)
class UnitPerturbation:
    """What :func:`cbedflow.forward.cbed4d.simulate_unit` applies to one unit.

    Parameters
    ----------
    perturbation : Perturbation
        The structure's draw.
    source_offsets_A : tuple of (float, float)
        Probe displacement of each configuration of the unit's batch [Å].
    labels : dict
        Values added to the labels of every sample of the unit (the campaign
        may instead put :meth:`Perturbation.labels` in each sample's
        ``info``, as LAO/STO does for its per-plane thicknesses).
    """

    perturbation: Perturbation
    source_offsets_A: tuple
    labels: dict = field(default_factory=dict)

    def attrs(self) -> dict:
        """JSON attributes of the unit (``perturbation``)."""
        return {**asdict(self.perturbation),
                "tilt_xy_mrad": list(self.perturbation.tilt_xy_mrad),
                "source_offsets_A": [list(map(float, o)) for o in self.source_offsets_A]}


def unit_perturbation(p: Perturbation, n_configs: int, batch: int, batch_size: int
                      ) -> UnitPerturbation:
    """The part of structure draw ``p`` that one unit applies: the source
    offsets of configurations ``batch * batch_size`` .. ``+ batch_size - 1``
    of the structure's ``n_configs`` (the same set whatever the batching)."""
    if p.source_fwhm_A > 0 and n_configs < 3:
        raise PerturbationError(
            f"source size {p.source_fwhm_A:.3f} Å is averaged over the frozen-phonon "
            f"configurations; simulation.phonons.configs={n_configs} is too few, valid: >= 3")
    offs = source_offsets_A(p.source_fwhm_A, n_configs, p.source_rotation_deg)
    mine = offs[batch * batch_size:(batch + 1) * batch_size]
    return UnitPerturbation(p, tuple(tuple(map(float, o)) for o in mine))


def change_thickness(atoms, cells: int):
    """``atoms`` with ``cells`` whole unit cells repeated (> 0) or removed
    (< 0) at the exit surface (largest z), a new object.

    Repeating copies the last cell (its atoms in [(n - 1) a, n a)) shifted by
    a, 2a, ... along z; the entrance side, where labels such as a step's
    depth are measured from, is unchanged. Needs ``info['unit_cell_A']`` and
    ``info['thickness_cells']`` (the cell's z-extent is n a).
    """
    a = float(atoms.info["unit_cell_A"])
    n = int(atoms.info["thickness_cells"])
    if abs(atoms.cell[2, 2] - n * a) > 1e-6:
        raise PerturbationError(f"structure {atoms.info.get('structure')!r}: z-extent "
                                f"{atoms.cell[2, 2]:.4f} Å is not {n} cells of {a} Å")
    if n + cells < 1:
        raise PerturbationError(f"thickness error of {cells} cells leaves no sample of "
                                f"{n} cells; valid: > {-n}")
    out = atoms.copy()
    if cells == 0:
        return out
    z = out.positions[:, 2]
    if cells < 0:
        out = out[z < (n + cells) * a - 1e-6]
    else:
        last = out[z >= (n - 1) * a - 1e-6]
        for m in range(1, cells + 1):
            extra = last.copy()
            extra.positions[:, 2] += m * a
            out += extra
    cell = out.cell.array.copy()
    cell[2, 2] = (n + cells) * a
    out.set_cell(cell)
    out.info = dict(atoms.info)
    return out
