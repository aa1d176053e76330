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
                    film_cell_A=float(lf[0] / film.cells))
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
