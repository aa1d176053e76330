"""A film on a substrate, side by side in the image: two tilted perovskites
joined along x of the projection, with a known tilt system per column of
zone cells (the ground truth of a tilt map).

The film is strained coherently to the substrate in the interface plane (y,
and z along the beam), as an epitaxial film is; along x each part keeps its
own zone-cell length. The octahedra of the two parts meet at the interface
plane without relaxation (an O shared across it is duplicated or missing
within 0.2 Å: the first zone cell on either side is not a bulk structure),
and the supercell is periodic along x, so there are two interfaces: at
x = 0 (wrap-around) and between the parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Side:
    """One side of the interface: a tilt system, its angles [deg] and how
    many zone cells wide it is along x."""

    system: str
    angles_deg: tuple[float, float, float]
    cells: int


def build_interface(substrate: Side, film: Side, zone: str = "110", repeats: int = 2,
                    a_site: str = "Sr", b_site: str = "Ti", bond_length_A: float = 1.9525,
                    max_strain: float = 0.015):
    """The projected supercell (ase.Atoms, orthogonal, ``repeats`` zone
    cells thick) of ``substrate`` cells then ``film`` cells along x, and the
    x-range [Å] of every zone cell with its tilt system:
    ``info["cells"] = [(x0_A, x1_A, system, alpha, beta, gamma), ...]``.
    The film is scaled in y and z to the substrate's lengths (its strain is
    ``info["film_strain"]``)."""
    from .structures import build_tilted_perovskite, project

    if substrate.cells < 1 or film.cells < 1:
        raise ValueError(f"cells {substrate.cells}, {film.cells}: each side needs >= 1 zone cell")
    parts = []
    for side in (substrate, film):
        atoms = project(build_tilted_perovskite(side.system, side.angles_deg, a_site=a_site,
                                                b_site=b_site, bond_length_A=bond_length_A),
                        zone, repeats, max_strain=max_strain)
        parts.append(atoms * (side.cells, 1, 1))
    sub, fil = parts
    ls, lf = np.diag(sub.cell), np.diag(fil.cell)
    strain = ls[1:] / lf[1:] - 1.0
    fil.set_cell([lf[0], ls[1], ls[2]], scale_atoms=True)
    fil.positions[:, 0] += ls[0]
    out = sub + fil
    out.set_cell([ls[0] + lf[0], ls[1], ls[2]], scale_atoms=False)
    out.pbc = True
    out.wrap()
    cells = []
    for side, x0, width in ((substrate, 0.0, ls[0]), (film, ls[0], lf[0])):
        w = width / side.cells
        cells += [(float(x0 + k * w), float(x0 + (k + 1) * w), side.system,
                   *map(float, side.angles_deg)) for k in range(side.cells)]
    out.info.update(cells=cells, film_strain=[float(v) for v in strain],
                    substrate_cell_A=float(ls[0] / substrate.cells),
                    film_cell_A=float(lf[0] / film.cells), interface_A=float(ls[0]))
    return out


def truth_at(cells: list, x_A: np.ndarray) -> list:
    """The (system, alpha, beta, gamma) of the zone cell at every ``x_A``
    [Å] (periodic in the supercell)."""
    total = cells[-1][1]
    out = []
    for x in np.asarray(x_A, float) % total:
        for c in cells:
            if c[0] <= x < c[1]:
                out.append(c[2:])
                break
    return out


def first_composition(config: dict) -> dict:
    """Keyword arguments of :func:`build_interface` for the campaign's first
    composition and strain limit (``tilts`` section of ``config``)."""
    t = config["tilts"]
    c = t["compositions"][0]
    return {"a_site": c["a_site"], "b_site": c["b_site"],
            "bond_length_A": c["bond_length_A"], "max_strain": t["max_strain"]}


def simulate_interface(camp, substrate: Side, film: Side, repeats: int | None = None,
                       progress: Callable[[str], None] = lambda m: None):
    """Simulate the ABF/HAADF images of the interface supercell with the
    campaign's imaging, as the training images are made but without residual
    aberrations: PRISM (or multislice) on the supercell with the probe window
    of one zone cell (interpolation = (cells, 1)) and the config's pixels per
    zone cell.

    Parameters
    ----------
    camp : AbfTilts
        The campaign (its ``imaging``, ``tilts`` and ``seed``).
    substrate, film : Side
        The two sides, substrate first along x.
    repeats : int, optional
        Thickness in zone cells along the beam; default the thinnest of
        ``imaging.thickness_repeats``.
    progress : callable
        Receives one line per frozen-phonon configuration.

    Returns
    -------
    (StemImage, ase.Atoms)
        The images (x, y) at ``pixel_A`` [Å] and the supercell (its
        ``info["cells"]``: the truth per zone cell).
    """
    from ...forward.stem_image import Residuals, simulate_image

    im = camp.config["imaging"]
    repeats = int(repeats or min(im["thickness_repeats"]))
    atoms = build_interface(substrate, film, im["zone"], repeats,
                            **first_composition(camp.config))
    n = substrate.cells + film.cells
    base = camp.imaging_settings()
    settings = type(base)(**{**base.__dict__, "tile": (1, 1), "interpolation": (n, 1),
                             "pixels": (im["pixels"][0] * n, im["pixels"][1])})
    img = simulate_image(atoms, settings, camp.phonon_seeds("interface"), Residuals(),
                         progress=progress)
    img.settings = settings
    return img, atoms


def square_pixels(image_yx: np.ndarray, pixel_A: Sequence[float]) -> np.ndarray:
    """A periodic image (rows = y) resampled along y to the pixel size along
    x by Fourier interpolation (exact for a band-limited periodic image), so
    that one pixel size describes it (a ``.npy`` for ``predict``).

    Parameters
    ----------
    image_yx : ndarray (ny, nx)
        One period along y.
    pixel_A : (float, float)
        Pixel size (x, y) [Å].

    Returns
    -------
    ndarray (round(ny * py / px), nx)
        Values clipped at 0 (ringing of the interpolation).
    """
    img = np.asarray(image_yx, float)
    px, py = (float(v) for v in pixel_A)
    ny = int(round(img.shape[0] * py / px))
    f = np.fft.rfft(img, axis=0)
    g = np.zeros((ny // 2 + 1, img.shape[1]), complex)
    k = min(len(f), len(g))
    g[:k] = f[:k]
    return np.clip(np.fft.irfft(g, n=ny, axis=0) * (ny / img.shape[0]), 0, None)


def sides_of(atoms) -> list[dict]:
    """The two sides of :func:`build_interface`'s supercell as truth records:
    ``name``, ``system``, ``angles_deg`` (alpha, beta, gamma) and the x range
    ``x0_A``, ``x1_A`` [Å] (the substrate from 0, the film up to the
    supercell's length)."""
    cells, x = atoms.info["cells"], float(atoms.info["interface_A"])
    return [{"name": name, "system": c[2], "angles_deg": [float(v) for v in c[3:6]],
             "x0_A": x0, "x1_A": x1}
            for name, c, x0, x1 in (("substrate", cells[0], 0.0, x),
                                    ("film", cells[-1], x, float(cells[-1][1])))]


def window_sides(sides: Sequence[dict], x0_A: np.ndarray, width_A: float,
                 tolerance_A: float = 0.05) -> np.ndarray:
    """The side each window lies within, -1 where it straddles an interface.

    Parameters
    ----------
    sides : sequence of dict
        Truth records with ``x0_A`` and ``x1_A`` [Å] (:func:`sides_of`).
    x0_A : ndarray (windows,)
        Start of every window along x [Å].
    width_A : float
        Window width along x [Å].
    tolerance_A : float
        How far [Å] a window may reach past its side's edge (rounding of
        the resampled pixels).

    Returns
    -------
    ndarray (windows,) of int
        Index into ``sides``, or -1.
    """
    x0 = np.asarray(x0_A, float)
    out = np.full(x0.shape, -1, int)
    for k, s in enumerate(sides):
        inside = (x0 >= s["x0_A"] - tolerance_A) & (x0 + width_A <= s["x1_A"] + tolerance_A)
        out[inside & (out < 0)] = k
    return out


def score_windows(sides: Sequence[dict], side: np.ndarray,
                  systems: Sequence[str] | None = None,
                  angles_deg: np.ndarray | None = None) -> dict:
    """Score predicted windows against the truth of the side each lies in.

    Parameters
    ----------
    sides : sequence of dict
        Truth records (``name``, ``system``, ``angles_deg``).
    side : ndarray (windows,) of int
        :func:`window_sides`: index into ``sides``, -1 = not scored.
    systems : sequence of str, optional
        Predicted tilt system of every window.
    angles_deg : ndarray (windows, 3), optional
        Predicted alpha, beta, gamma [deg] of every window.

    Returns
    -------
    dict
        ``windows``, ``scored`` and per side ``windows_by_side``; with
        ``systems``: ``accuracy`` and ``accuracy_by_side``; with
        ``angles_deg``: ``mae_deg`` (alpha, beta, gamma) and
        ``mae_deg_by_side``. A side without windows is left out.
    """
    side = np.asarray(side, int)
    inside = side >= 0
    out: dict = {"windows": int(side.size), "scored": int(inside.sum()),
                 "windows_by_side": {s["name"]: int((side == k).sum())
                                     for k, s in enumerate(sides)}}
    present = [(k, s) for k, s in enumerate(sides) if (side == k).any()]
    if systems is not None:
        ok = np.array([inside[i] and systems[i] == sides[side[i]]["system"]
                       for i in range(side.size)])
        out["accuracy"] = float(ok[inside].mean()) if inside.any() else float("nan")
        out["accuracy_by_side"] = {s["name"]: float(ok[side == k].mean()) for k, s in present}
    if angles_deg is not None:
        pred = np.asarray(angles_deg, float).reshape(side.size, 3)
        truth = np.array([sides[k]["angles_deg"] if k >= 0 else [np.nan] * 3 for k in side],
                         float).reshape(side.size, 3)
        err = np.abs(pred - truth)
        out["mae_deg"] = (err[inside].mean(axis=0).tolist() if inside.any()
                          else [float("nan")] * 3)
        out["mae_deg_by_side"] = {s["name"]: err[side == k].mean(axis=0).tolist()
                                  for k, s in present}
    return out


def window_starts(result: dict) -> tuple[np.ndarray, float]:
    """Start along x [Å] of every window of a ``predict`` result on an image
    (``window_grid``, ``stride_px``, ``pixel_A``; windows ordered x-major as
    :func:`.measured.read_measured` cuts them) and the window width [Å]
    (two strides: the model's patch)."""
    grid, stride, px = result["window_grid"], result["stride_px"], result["pixel_A"]
    x0 = np.repeat(np.arange(grid[0]) * stride[0] * px[0], grid[1])
    return x0, float(2 * stride[0] * px[0])
