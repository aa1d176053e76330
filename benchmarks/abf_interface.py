"""Tilt maps of a simulated interface image with known ground truth (the
seed's Fig. 2: a tilted film beside an untilted substrate).

    # 1. simulate the image (simulation environment), with a campaign config's imaging
    PYTHONPATH=workflow .venv/simulate/bin/python benchmarks/abf_interface.py simulate \\
        --configfile config/abf-reproduce.yaml --out results-abf-interface
    # 2. the models' maps and their score (training environment)
    PYTHONPATH=workflow .venv/train/bin/python benchmarks/abf_interface.py score \\
        --run results-abf-reproduce --out results-abf-interface \\
        --json docs/benchmarks/abf_interface.json

The same image is a stage of the workflow (``showcase`` config section:
its maps and score in the Snakemake report; docs/abf.md); this script runs
it by hand against any trained campaign.

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
    from cbedflow.campaigns.abf_tilts.interface import Side, simulate_interface
    from cbedflow.config import load

    camp = get_campaign(load(args.configfile))
    film = Side(args.film, tuple(args.angles), args.film_cells)
    img, atoms = simulate_interface(camp, Side("a0a0a0", (0.0, 0.0, 0.0), args.substrate_cells),
                                    film, progress=lambda m: print(m, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "interface_abf.npy", img.abf.T)  # rows = y, as a microscope writes
    (out / "interface.json").write_text(json.dumps({
        "cells": atoms.info["cells"], "film_strain": atoms.info["film_strain"],
        "interface_A": atoms.info["interface_A"],
        "pixel_A": list(img.pixel_A), "shape_xy": list(img.abf.shape),
        "thickness_A": float(atoms.cell[2, 2]), "seconds": round(img.seconds, 1),
        "settings": img.settings.to_dict(), "configfile": str(args.configfile)}, indent=1))
    print(f"image {img.abf.shape} at {img.pixel_A} Å in {img.seconds:.0f} s -> {out}")


def _sides(meta: dict) -> list:
    """The two sides of an interface.json (written before ``interface_A`` was
    recorded: the first cell of another system than the first)."""
    cells = meta["cells"]
    x = meta.get("interface_A") or next(c[0] for c in cells if c[2:] != cells[0][2:])
    return [{"name": name, "system": c[2], "angles_deg": list(c[3:6]), "x0_A": x0, "x1_A": x1}
            for name, c, x0, x1 in (("substrate", cells[0], 0.0, x),
                                    ("film", cells[-1], x, cells[-1][1]))]


def score(args) -> None:
    from cbedflow.campaigns.abf_tilts.interface import (score_windows, square_pixels,
                                                        window_sides, window_starts)

    out = Path(args.out)
    meta = json.loads((out / "interface.json").read_text())
    sides = _sides(meta)
    # square pixels for a .npy with one pixel size, then two periods tall so the
    # windows can also move along y
    img = np.load(out / "interface_abf.npy")  # rows = y
    np.save(out / "interface_square.npy", np.tile(square_pixels(img, meta["pixel_A"]), (2, 1)))
    meta["square_pixel_A"] = meta["pixel_A"][0]
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
        x0, width = window_starts(pred)
        side = window_sides(sides, x0, width)
        if task == "tilt_system":
            classes = list(pred["classes"])
            p = [classes[i] for i in np.argmax(np.asarray(pred["probabilities"]), axis=1)]
            s = score_windows(sides, side, systems=p)
            entry = {"windows": s["windows"], "scored": s["scored"], "accuracy": s["accuracy"],
                     "by_side": {sides[k]["system"]: v for k, v in
                                 enumerate(s["accuracy_by_side"].values())}}
        else:
            s = score_windows(sides, side, angles_deg=np.asarray(pred["predicted"]))
            entry = {"windows": s["windows"], "scored": s["scored"], "mae_deg": s["mae_deg"],
                     "by_side": {sides[k]["system"]: v for k, v in
                                 enumerate(s["mae_deg_by_side"].values())}}
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
