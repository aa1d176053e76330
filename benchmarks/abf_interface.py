"""Tilt maps of a simulated interface image with known ground truth (the
seed's Fig. 2: a tilted film beside an untilted substrate).

    # 1. simulate the image (simulation environment), with a campaign config's imaging
    PYTHONPATH=workflow .venv/simulate/bin/python benchmarks/abf_interface.py simulate \\
        --configfile config/abf-reproduce.yaml --out results-abf-interface
    # 2. the models' maps and their score (training environment)
    PYTHONPATH=workflow .venv/train/bin/python benchmarks/abf_interface.py score \\
        --run results-abf-reproduce --out results-abf-interface \\
        --json docs/benchmarks/abf_interface.json

The structure (:func:`cbedflow.campaigns.abf_tilts.interface.build_interface`):
``--substrate-cells`` zone cells of untilted SrTiO3 (a0a0a0) then
``--film-cells`` of the film system (default a-a-a- at 8 deg), the film
strained to the substrate in the interface plane; the thickness is the
config's thinnest. Simulated with the config's imaging (frozen phonons, no
residual aberrations), PRISM with interpolation (cells, 1) so the probe
window is one zone cell as in training, and the config's pixels per zone
cell. Step 2 runs ``cbedflow predict`` for both tasks on the image (.npy
with its pixel size) and scores every window that lies within one side
(the windows that straddle an interface are shown, not scored).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def simulate(args) -> None:
    from cbedflow.campaigns import get_campaign
    from cbedflow.campaigns.abf_tilts.interface import Side, build_interface
    from cbedflow.config import load
    from cbedflow.forward.stem_image import Residuals, simulate_image

    camp = get_campaign(load(args.configfile))
    im = camp.config["imaging"]
    film = Side(args.film, tuple(args.angles), args.film_cells)
    atoms = build_interface(Side("a0a0a0", (0.0, 0.0, 0.0), args.substrate_cells), film,
                            im["zone"], min(im["thickness_repeats"]))
    n = args.substrate_cells + args.film_cells
    base = camp.imaging_settings()
    settings = type(base)(**{**base.__dict__, "tile": (1, 1), "interpolation": (n, 1),
                             "pixels": (im["pixels"][0] * n, im["pixels"][1])})
    seeds = camp.phonon_seeds("interface")
    img = simulate_image(atoms, settings, seeds, Residuals(),
                         progress=lambda m: print(m, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "interface_abf.npy", img.abf.T)  # rows = y, as a microscope writes
    (out / "interface.json").write_text(json.dumps({
        "cells": atoms.info["cells"], "film_strain": atoms.info["film_strain"],
        "pixel_A": list(img.pixel_A), "shape_xy": list(img.abf.shape),
        "thickness_A": float(atoms.cell[2, 2]), "seconds": round(img.seconds, 1),
        "settings": settings.to_dict(), "configfile": str(args.configfile)}, indent=1))
    print(f"image {img.abf.shape} at {img.pixel_A} Å in {img.seconds:.0f} s -> {out}")


def score(args) -> None:
    from cbedflow.campaigns.abf_tilts.interface import truth_at
    from cbedflow.campaigns.abf_tilts.structures import GLAZER

    out = Path(args.out)
    meta = json.loads((out / "interface.json").read_text())
    systems = list(GLAZER)
    # square pixels for a .npy with one pixel size: the periodic image resampled
    # along y by Fourier interpolation (exact for a band-limited periodic image),
    # then two periods tall so the windows can also move along y
    img = np.load(out / "interface_abf.npy")  # rows = y
    px, py = meta["pixel_A"]
    ny = int(round(img.shape[0] * py / px))
    f = np.fft.rfft(img, axis=0)
    g = np.zeros((ny // 2 + 1, img.shape[1]), complex)
    k = min(len(f), len(g))
    g[:k] = f[:k]
    square = np.fft.irfft(g, n=ny, axis=0) * (ny / img.shape[0])
    np.save(out / "interface_square.npy", np.tile(np.clip(square, 0, None), (2, 1)))
    meta["square_pixel_A"] = px
    result = {"image": meta, "tasks": {}}
    for task in ("tilt_system", "tilt_angles"):
        pdir = out / f"predict-{task}"
        cmd = [sys.executable, "-m", "cbedflow", "predict", "--params",
               json.dumps({"campaign": "abf_tilts"}), "--model",
               str(Path(args.run) / "models" / task / "all" / "model.keras"), "--task", task,
               "--input", str(out / "interface_square.npy"), "--out-dir", str(pdir),
               "--scan-step-A", str(meta["pixel_A"][0]), "--mc-samples", "1"]
        if pdir.exists():
            import shutil

            shutil.rmtree(pdir)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        pred = json.loads((pdir / "predictions.json").read_text())
        grid, stride, px = pred["window_grid"], pred["stride_px"], pred["pixel_A"]
        width = stride[0] * 2 * px[0]
        x0 = np.repeat(np.arange(grid[0]) * stride[0] * px[0], grid[1])
        lo, hi = truth_at(meta["cells"], x0), truth_at(meta["cells"], x0 + width - 1e-6)
        inside = np.array([a[0] == b[0] for a, b in zip(lo, hi)])
        truth = lo
        entry = {"windows": len(x0), "scored": int(inside.sum())}
        if task == "tilt_system":
            p = np.argmax(np.asarray(pred["probabilities"]), axis=1)
            t = np.array([systems.index(s[0]) for s in truth])
            entry["accuracy"] = float(np.mean(p[inside] == t[inside]))
            entry["by_side"] = {s: float(np.mean(p[inside & (t == systems.index(s))]
                                                 == systems.index(s)))
                                for s in sorted({c[2] for c in meta["cells"]})}
        else:
            p = np.asarray(pred["predicted"])
            t = np.array([s[1:] for s in truth], float)
            entry["mae_deg"] = np.abs(p[inside] - t[inside]).mean(axis=0).tolist()
            entry["by_side"] = {s: np.abs(p[inside & m] - t[inside & m]).mean(axis=0).tolist()
                                for s in sorted({c[2] for c in meta["cells"]})
                                for m in [np.array([q[0] == s for q in truth])]}
        entry["map"] = str(pdir / "map.png")
        result["tasks"][task] = entry
        print(task, json.dumps({k: v for k, v in entry.items() if k != "map"}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("simulate", "score"))
    ap.add_argument("--configfile", default=str(ROOT / "config" / "abf-reproduce.yaml"))
    ap.add_argument("--run", default="results-abf-reproduce")
    ap.add_argument("--out", default="results-abf-interface")
    ap.add_argument("--json", default=None)
    ap.add_argument("--film", default="a-a-a-")
    ap.add_argument("--angles", type=float, nargs=3, default=(8.0, 8.0, 8.0))
    ap.add_argument("--substrate-cells", type=int, default=4)
    ap.add_argument("--film-cells", type=int, default=4)
    args = ap.parse_args(argv)
    simulate(args) if args.step == "simulate" else score(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
