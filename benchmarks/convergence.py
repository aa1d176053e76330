"""Sampling convergence of the LAO/STO 4D-STEM simulation, printed as errors.

    python benchmarks/convergence.py            # ~10 minutes on 2 cores
    python benchmarks/convergence.py --quick    # 39 Å only, ~2 minutes

For the flat interface cross-section of the campaign (``n_substrate`` 1,
``n_film`` 2, square 15.6 Å cell) and a probe on a La, a Sr and a Ti column,
simulates one frozen-phonon configuration (the same displaced atoms at every
sampling: the displacements do not depend on the grid) at the real-space
samplings the configs use and compares each with a fine reference (0.03 Å).
Reported per column, thickness and sampling:

* ``pattern``: relative L2 error of the CBED pattern out to 40 mrad (the
  pixelated detector of the configs; the same angular pixels at every
  sampling, since they are set by the cell);
* ``crop``: the same for the learning input (the pattern binned to 16 x 16
  pixels of ~5 mrad, as config/config.yaml's crop);
* ``haadf``: relative error of the virtual HAADF signal (60 mrad to the
  antialiasing cutoff of the coarse grid, which moves with the sampling; the
  reference is integrated over the same annulus);
* ``lost``: the fraction of the probe intensity removed by abTEM's
  antialiasing aperture (the electrons scattered beyond 2/3 of the Nyquist
  angle), which a coarse grid silently drops.

The result is written to docs/benchmarks/convergence.json (``--out``) and
summarised in docs/method.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from cbedflow.campaigns.lao_sto_cbed.structures import (  # noqa: E402
    A_STO, InterfaceGeometry, StructureSpec, build_structure)
from cbedflow.forward.cbed4d import smooth_size  # noqa: E402

SIGMAS = {"Sr": 0.088, "Ti": 0.073, "La": 0.080, "Al": 0.075, "O": 0.090}
GEOM = InterfaceGeometry(n_substrate=1, n_film=2, y_repeats=4)
FLAT = StructureSpec("step-0000", "step", 0, 0.0, 1)


def simulate(atoms, sampling_A: float, positions: np.ndarray, seed: int = 7):
    """Patterns (positions, kx, ky) to 40 mrad, HAADF per position with the
    cutoff of this grid, the cutoff [mrad] and the total intensity."""
    import abtem

    abtem.config.set({"precision": "float32", "diagnostics.progress_bar": False,
                      "fftw.threads": 1, "fftw.planning_effort": "FFTW_ESTIMATE"})
    gpts = tuple(smooth_size(int(np.ceil(atoms.cell[i, i] / sampling_A))) for i in (0, 1))
    fp = abtem.FrozenPhonons(atoms, num_configs=1, sigmas=SIGMAS, seed=(seed,))
    pot = abtem.Potential(fp.randomize(atoms), gpts=gpts, slice_thickness=A_STO / 2,
                          parametrization="lobato", projection="infinite").build(lazy=False)
    probe = abtem.Probe(energy=200e3, semiangle_cutoff=20)
    probe.grid.match(pot)
    cutoff = float(min(probe.cutoff_angles))
    dets = [abtem.PixelatedDetector(max_angle=40.0), abtem.AnnularDetector(60.0, None),
            abtem.PixelatedDetector(max_angle=None)]
    pat, ring, full = probe.scan(pot, scan=abtem.CustomScan(positions), detectors=dets,
                                 lazy=True).compute(scheduler="synchronous")
    return (np.asarray(pat.array, np.float64), np.asarray(ring.array, np.float64), cutoff,
            np.asarray(full.array, np.float64).sum(axis=(-2, -1)),
            full, np.asarray(gpts))


def annulus(full, lo: float, hi: float) -> np.ndarray:
    """Integrated intensity of ``full`` patterns between lo and hi [mrad]."""
    ax, ay = full.angular_sampling[-2:]
    nkx, nky = full.array.shape[-2:]
    tx = (np.arange(nkx) - nkx // 2) * ax
    ty = (np.arange(nky) - nky // 2) * ay
    t = np.hypot(tx[:, None], ty[None, :])
    m = (t >= lo) & (t < hi)
    return np.asarray(full.array, np.float64)[..., m].sum(axis=-1)


def binned(p: np.ndarray, n: int = 16) -> np.ndarray:
    """Central pattern summed to n x n blocks (the crop of config/config.yaml)."""
    k = p.shape[-1]
    side = (k // n) * n
    s = (k - side) // 2
    c = p[..., s:s + side, s:s + side]
    b = side // n
    return c.reshape(c.shape[:-2] + (n, b, n, b)).sum(axis=(-3, -1))


def centred(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both patterns cut to the pixels they share about the zero beam (index
    n // 2, abTEM's convention): grids of different sizes may give the 40 mrad
    detector one pixel more or less."""
    out = []
    h = min(min(n // 2, n - n // 2 - 1) for n in a.shape[-2:] + b.shape[-2:])
    for p in (a, b):
        cx, cy = p.shape[-2] // 2, p.shape[-1] // 2
        out.append(p[..., cx - h:cx + h + 1, cy - h:cy + h + 1])
    return out[0], out[1]


def rel(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    ax = tuple(range(1, a.ndim))
    return np.sqrt(((a - ref) ** 2).sum(axis=ax) / (ref ** 2).sum(axis=ax))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--thicknesses", type=float, nargs="*", default=None,
                    help="sample thicknesses [Å] (default 39 78 117; --quick: 39)")
    ap.add_argument("--samplings", type=float, nargs="*", default=[0.1, 0.08, 0.06, 0.05])
    ap.add_argument("--reference", type=float, default=0.03)
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks/convergence.json"))
    a = ap.parse_args(argv)
    thick = a.thicknesses or ([39.0] if a.quick else [39.0, 78.0, 117.0])
    rows = []
    for t in thick:
        atoms = build_structure(FLAT, GEOM, t)
        x0 = float(atoms.info["scan_x0_A"])
        cols = {"La": (x0 + A_STO / 2, 0.0), "Sr": (x0 - A_STO / 2, 0.0),
                "Ti": (x0, A_STO / 2)}
        pos = np.array(list(cols.values()))
        t0 = time.perf_counter()
        ref = simulate(atoms, a.reference, pos)
        print(f"t={atoms.cell[2, 2]:.1f} Å reference {a.reference} Å grid {ref[5].tolist()} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        for s in a.samplings:
            pat, ring, cutoff, total, _, gpts = simulate(atoms, s, pos)
            pat, ref_pat = centred(pat, ref[0])
            e_pat = rel(pat, ref_pat)
            e_crop = rel(binned(pat), binned(ref_pat))
            ref_ring = annulus(ref[4], 60.0, cutoff)
            e_ring = np.abs(ring - ref_ring) / ref_ring
            for j, col in enumerate(cols):
                row = {"thickness_A": round(float(atoms.cell[2, 2]), 3), "column": col,
                       "sampling_A": s, "gpts": gpts.tolist(), "cutoff_mrad": round(cutoff, 1),
                       "pattern": float(e_pat[j]), "crop": float(e_crop[j]),
                       "haadf": float(e_ring[j]), "lost": float(1 - total[j]),
                       "lost_reference": float(1 - ref[3][j])}
                rows.append(row)
                print(f"  {col:2s} {s:.2f} Å (cutoff {cutoff:5.1f} mrad): pattern "
                      f"{100 * row['pattern']:5.1f}%  crop {100 * row['crop']:5.1f}%  haadf "
                      f"{100 * row['haadf']:5.1f}%  lost {100 * row['lost']:5.1f}% "
                      f"(reference {100 * row['lost_reference']:.1f}%)", flush=True)
    result = {"reference_sampling_A": a.reference, "energy_kV": 200, "semiangle_mrad": 20,
              "slice_thickness_A": A_STO / 2, "structure": "flat interface, n_substrate 1, "
              "n_film 2, 15.62 Å square cell", "frozen_phonon_configurations": 1,
              "rows": rows}
    if not a.quick:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"written {a.out}")
    return result


if __name__ == "__main__":
    main()
