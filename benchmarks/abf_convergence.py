"""Convergence and shortcuts of the ABF image simulation (abf_tilts), printed
as errors against a reference.

    python benchmarks/abf_convergence.py            # ~10 minutes on 2 cores
    python benchmarks/abf_convergence.py --quick    # a-a-a- only, ~5 minutes

For SrTiO3 (110)pc, untilted and a-a-a- at 8 deg, two zone cells (22 Å)
thick, 20 Å defocus, one static lattice (no phonons: the same atoms in
every run), 32 x 44 pixels per zone cell, simulates the ABF and HAADF images:

* ``tile``: multislice with the zone cell tiled 1, 2 and 3 times in-plane
  (the reference is 3 x 3): the error of a probe that overlaps its periodic
  images;
* ``prism``: PRISM (abTEM SMatrix) with interpolation = tile, against the
  same reference (equal to multislice on one zone cell);
* ``sampling``: multislice 2 x 2 at 0.07 and 0.05 Å against 0.04 Å;
* ``tilt_signal``: the ABF difference between the tilted and the untilted
  structure at the reference settings, the signal the networks learn.

Errors are relative L2 of the ABF image's contrast (image minus its mean),
``|a - ref| / |ref - mean(ref)|``, and of the mean ABF intensity. Written to
docs/benchmarks/abf_convergence.json (``--out``) and summarised in
docs/abf.md.
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


def main(argv=None) -> int:
    from cbedflow.campaigns.abf_tilts.structures import build_tilted_perovskite, project
    from cbedflow.forward.stem_image import ImagingSettings, Residuals, simulate_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a-a-a- only")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "abf_convergence.json"))
    args = ap.parse_args(argv)
    structures = {"a-a-a- 8 deg": ("a-a-a-", (8.0, 8.0, 8.0))}
    if not args.quick:
        structures = {"a0a0a0": ("a0a0a0", (0.0, 0.0, 0.0)), **structures}
    res = Residuals(defocus_A=20.0)
    out = {"settings": {"zone": "110", "repeats": 2, "defocus_A": 20.0, "pixels": [32, 44],
                        "energy_kV": 300.0, "semiangle_mrad": 25.0, "phonons": "none"},
           "structures": {}}
    images = {}
    for label, (system, angles) in structures.items():
        atoms = project(build_tilted_perovskite(system, angles), "110", 2)
        runs = {
            "multislice 3x3 0.05": ImagingSettings(method="multislice", tile=(3, 3)),
            "multislice 2x2 0.05": ImagingSettings(method="multislice", tile=(2, 2)),
            "multislice 1x1 0.05": ImagingSettings(method="multislice", tile=(1, 1)),
            "prism 2x2 0.05": ImagingSettings(method="prism", tile=(2, 2)),
            "prism 1x1 0.05": ImagingSettings(method="prism", tile=(1, 1)),
            "prism 1x1 0.06": ImagingSettings(method="prism", tile=(1, 1), sampling_A=0.06),
            "multislice 2x2 0.07": ImagingSettings(method="multislice", tile=(2, 2),
                                                   sampling_A=0.07, haadf_mrad=(75, 90)),
            "multislice 2x2 0.04": ImagingSettings(method="multislice", tile=(2, 2),
                                                   sampling_A=0.04),
        }
        if args.quick:
            runs.pop("multislice 2x2 0.04")
        imgs, secs = {}, {}
        for name, s in runs.items():
            s = ImagingSettings(**{**s.__dict__, "pixels": (32, 44)})
            img = simulate_image(atoms, s, [0], res)
            imgs[name], secs[name] = img, img.seconds
            print(f"{label}: {name}: {img.seconds:.1f} s, mean ABF {img.abf.mean():.4f}",
                  flush=True)
        images[label] = imgs

        def err(name, ref):
            a, r = imgs[name].abf, imgs[ref].abf
            return {"contrast": float(np.linalg.norm(a - r) / np.linalg.norm(r - r.mean())),
                    "mean": float(abs(a.mean() - r.mean()) / r.mean()),
                    "seconds": round(secs[name], 1)}
        ref = "multislice 3x3 0.05"
        fine = "multislice 2x2 0.04" if "multislice 2x2 0.04" in imgs else None
        entry = {
            "tile": {n: err(n, ref) for n in ("multislice 1x1 0.05", "multislice 2x2 0.05")},
            "prism": {n: err(n, ref) for n in ("prism 1x1 0.05", "prism 2x2 0.05",
                                               "prism 1x1 0.06")},
            "prism_vs_multislice_1x1": err("prism 1x1 0.05", "multislice 1x1 0.05"),
            "reference_seconds": round(secs[ref], 1),
        }
        if fine:
            entry["sampling"] = {n: err(n, fine) for n in ("multislice 2x2 0.07",
                                                           "multislice 2x2 0.05")}
        out["structures"][label] = entry
    if len(images) == 2:
        a, b = (images[k]["multislice 3x3 0.05"].abf for k in images)
        out["tilt_signal"] = {"a-a-a- 8 deg vs a0a0a0, contrast":
                              float(np.linalg.norm(b - a) / np.linalg.norm(a - a.mean()))}
    out["wall_time_s"] = round(time.perf_counter() - T0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


T0 = time.perf_counter()

if __name__ == "__main__":
    sys.exit(main())
