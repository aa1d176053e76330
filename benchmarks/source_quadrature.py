"""Error of the source-size average (docs/perturbations.md), printed.

    python benchmarks/source_quadrature.py     # ~4 minutes on 2 idle cores

The finite source is averaged jointly with the frozen phonons: configuration
j of N has its probes displaced by point j of a centred quasi-random N-point
sample of the Gaussian source image (cbedflow.forward.perturb). Here the
phonons are off (sigma 0), so every configuration is the same crystal and the
N-configuration unit is exactly the N-point source quadrature; each N (two
rotations of the set) is compared with a 64-point reference, and the point
source shows the size of the effect. Flat LAO/STO interface (n_substrate 1,
n_film 2, square 15.6 Å cell), 39 Å, 0.1 Å sampling, 0.5 Å FWHM, 9 x 2 probe
positions over two cells across the interface; relative L2 over all
positions of the CBED patterns (to 40 mrad) and of the virtual HAADF signal.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import zarr

from cbedflow.campaigns.lao_sto_cbed.structures import (
    ELEMENTS,
    InterfaceGeometry,
    StructureSpec,
    build_structure,
)
from cbedflow.forward.cbed4d import ScanSettings, SimulationSettings, simulate_unit
from cbedflow.forward.perturb import Perturbation, unit_perturbation

FWHM_A = 0.5


def run(atoms, settings, n: int, fwhm_A: float, rotation_deg: float, out: Path
        ) -> tuple[np.ndarray, np.ndarray]:
    """(cbed, haadf) of an n-configuration unit with an n-point source average."""
    up = unit_perturbation(Perturbation(source_fwhm_A=fwhm_A, source_rotation_deg=rotation_deg),
                           n, 0, n)
    p = out / f"n{n}_f{fwhm_A}_r{rotation_deg}.zarr"
    simulate_unit(atoms, settings, list(range(n)), p, perturbation=up, progress=lambda m: None)
    g = zarr.open_group(str(p), mode="r")
    return g["cbed"][...].astype(np.float64), g["haadf"][...].astype(np.float64)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 error of ``a`` against ``b``."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    geom = InterfaceGeometry(n_substrate=1, n_film=2, y_repeats=4)
    atoms = build_structure(StructureSpec("step-0000", "step", 0, 0.0, 1), geom, 39.0)
    s = SimulationSettings(sigmas_A={e: 0.0 for e in ELEMENTS}, sampling_A=0.1,
                           detector_max_angle_mrad=40, scan=ScanSettings(-0.5, 2.0, 9, 2))
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        ref, href = run(atoms, s, 64, FWHM_A, 0.0, out)
        point, hpoint = run(atoms, s, 1, 0.0, 0.0, out)
        print(f"point source: cbed {rel(point, ref):.4f} haadf {rel(hpoint, href):.4f}")
        for n in (3, 6, 12):
            for rot in (0.0, 45.0):
                c, h = run(atoms, s, n, FWHM_A, rot, out)
                print(f"N={n} rotation {rot:g} deg: cbed {rel(c, ref):.4f} haadf {rel(h, href):.4f}")


if __name__ == "__main__":
    main()
