"""Whole simulated HAADF images of BiFeO3 with known polarization, read by the
trained network (``cbedflow predict``) and by the Gaussian-fit method: the
apparent polarization that specimen mistilt alone produces in a P = 0
crystal (per mrad, both methods), and polarization maps with truth and
difference (the seed's Fig. 2).

    # 1. simulate (simulation environment), with a campaign config's imaging
    PYTHONPATH=workflow .venv/simulate/bin/python benchmarks/bfo_images.py simulate \\
        --configfile config/bfo-reproduce.yaml --out results-bfo-images
    # 2. the network's maps (training environment: TensorFlow)
    PYTHONPATH=workflow .venv/train/bin/python benchmarks/bfo_images.py predict \\
        --run results-bfo-reproduce --out results-bfo-images
    # 3. the Gaussian-fit method on the same sub-images, and the scores
    PYTHONPATH=workflow .venv/simulate/bin/python benchmarks/bfo_images.py score \\
        --configfile config/bfo-reproduce.yaml --out results-bfo-images \\
        --json docs/benchmarks/bfo_images.json --plots docs/results-bfo

Images (the config's imaging: sampling, PRISM window, phonons, pixel):

* ``mistilt_<axis>_<mrad>``: the config's supercell with P = 0, 12 cells
  (47.6 Å) thick, no residual aberrations, the specimen tilted by 0-8 mrad
  about y (``x``: the columns lean along x) or about the diagonal (``xy``).
  Noise-free: the apparent P is a systematic error.
* ``mistilt_static_<mrad>``: the same about y without phonons (the
  systematic shift without the frozen-phonon noise of 2 configurations).
* ``mistilt_thick_<mrad>``: the static series 40 cells (159 Å) thick.
* ``map_<kind>``: 8 x 4 cells of a stripe-domain (109 deg walls) and of a
  smooth random field, 40 pm, 12 cells thick, 1 mrad mistilt, recorded at
  the config's middle dose.

Every image is saved as ``<name>.npy`` (rows = y) with ``<name>.truth.json``
(B sites and P per cell), which ``cbedflow predict`` draws beside its map;
the network and the fit read it padded by one cell from the opposite edges
(it is periodic), so every cell of it is read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

MISTILTS_MRAD = (0.0, 2.0, 4.0, 6.0, 8.0)
AXES = {"x": (1.0, 0.0), "xy": (np.sqrt(0.5), np.sqrt(0.5))}


def cases(camp) -> dict:
    """name -> (field kind, cells, mistilt (x, y) mrad, noisy, static lattice,
    thickness in cells)."""
    out = {}
    for axis, (ux, uy) in AXES.items():
        for t in MISTILTS_MRAD:
            if t == 0 and axis != "x":
                continue
            out[f"mistilt_{axis}_{t:g}"] = ("zero", camp.cells, (t * ux, t * uy), False, False,
                                             12)
    # the same along x without phonons: the systematic shift without the
    # frozen-phonon noise of the config's few configurations
    for t in MISTILTS_MRAD:
        out[f"mistilt_static_{t:g}"] = ("zero", camp.cells, (t, 0.0), False, True, 12)
    # and 40 cells (159 Å) thick, where channelling has more depth to differ
    for t in MISTILTS_MRAD:
        out[f"mistilt_thick_{t:g}"] = ("zero", camp.cells, (t, 0.0), False, True, 40)
    for kind in ("stripes", "random"):
        out[f"map_{kind}"] = (kind, (2 * camp.cells[0], camp.cells[1]), (1.0, 0.0), True, False,
                              12)
    return out


def simulate(args) -> None:
    from cbedflow.campaigns import get_campaign
    from cbedflow.campaigns.bfo_polarization import noisy
    from cbedflow.campaigns.bfo_polarization.structures import build_bfo, polarization_field
    from cbedflow.config import load
    from cbedflow.forward.stem_image import Residuals, simulate_image

    cfg = load(args.configfile)
    camp = get_campaign(cfg)
    a = float(cfg["film"]["a_A"])
    ppc = cfg["imaging"]["pixels_per_cell"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doses = sorted(cfg["noise"]["doses_e_per_A2"])
    dose = doses[len(doses) // 2]
    for name, (kind, cells, tilt, is_noisy, static, repeats) in cases(camp).items():
        if (out / f"{name}.npy").exists():
            continue
        opts = {"stripes": {"wall": "109", "normal": "x", "period_cells": cells[0] // 2}
                }.get(kind, {})
        field = polarization_field(kind, cells, 40.0, np.random.default_rng(11), **opts)
        atoms = build_bfo(field, repeats, a_A=a)
        settings = replace(camp.imaging_settings(), pixels=(cells[0] * ppc, cells[1] * ppc),
                           **({"sigmas_A": {}} if static else {}))
        img = simulate_image(atoms, settings, camp.phonon_seeds(name),
                             Residuals(mistilt_mrad=tilt))
        haadf = img.haadf.astype(float)
        if is_noisy:
            haadf = noisy(haadf, dose, camp.pixel_A, cfg["noise"]["scan_jitter_pm"],
                          np.random.default_rng(12), periodic=True)
        ij = np.stack(np.meshgrid(*map(np.arange, cells), indexing="ij"), -1) + 0.5
        b_px = (ij + field / 100 / a) * ppc
        np.save(out / f"{name}.npy", haadf.T)  # rows = y, as a microscope writes it
        (out / f"{name}.truth.json").write_text(json.dumps({
            "b_sites_px": b_px.reshape(-1, 2).tolist(),
            "polarization_pm": field.reshape(-1, 2).tolist(), "pixel_A": camp.pixel_A,
            "mistilt_mrad": list(tilt), "kind": kind, "cells": list(cells),
            "dose_e_per_A2": dose if is_noisy else None, "static": static,
            "thickness_A": float(atoms.cell[2, 2]), "seconds": round(img.seconds, 1)}))
        print(f"{name}: {haadf.shape} in {img.seconds:.0f} s", flush=True)


def wrapped(npy: Path) -> Path:
    """A periodic image padded by one cell on every side from its opposite
    edge (``<name>-wrapped.npy`` and its truth), so every cell of the
    period has a whole sub-image around it and the padding cells none."""
    meta = json.loads(npy.with_name(npy.stem + ".truth.json").read_text())
    img = np.load(npy)  # rows = y
    cells = meta["cells"]
    ppc = img.shape[1] // cells[0]
    pad = np.pad(img, ppc, mode="wrap")
    b = np.asarray(meta["b_sites_px"], float) + ppc
    out = npy.with_name(npy.stem + "-wrapped.npy")
    np.save(out, pad)
    out.with_name(out.stem + ".truth.json").write_text(json.dumps(
        {**meta, "b_sites_px": b.tolist(), "wrapped_by_px": ppc}))
    return out


def predict(args) -> None:
    out = Path(args.out)
    for periodic in sorted(p for p in out.glob("*.npy") if not p.stem.endswith("-wrapped")):
        npy = wrapped(periodic)
        meta = json.loads(npy.with_name(npy.stem + ".truth.json").read_text())
        pdir = out / f"predict-{periodic.stem}"
        if pdir.exists():
            shutil.rmtree(pdir)
        cmd = [sys.executable, "-m", "cbedflow", "predict", "--params",
               json.dumps({"campaign": "bfo_polarization"}), "--model",
               str(Path(args.run) / "models" / args.task / "all" / "model.keras"),
               "--task", args.task, "--input", str(npy), "--out-dir", str(pdir),
               "--scan-step-A", str(meta["pixel_A"]), "--mc-samples", "1"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{npy.name}: {r.stderr[-2000:]}")
        print(f"{npy.name}: {pdir}", flush=True)


def score(args) -> None:
    from cbedflow.campaigns import get_campaign
    from cbedflow.campaigns.bfo_polarization import BfoPolarization
    from cbedflow.campaigns.bfo_polarization.columns import gaussian_fit_polarization_batch
    from cbedflow.campaigns.bfo_polarization.plots import field_maps
    from cbedflow.config import load
    from cbedflow.metrics import vector_metrics

    cfg = load(args.configfile)
    camp = get_campaign(cfg)
    a = float(cfg["film"]["a_A"])
    w = camp.window_px()
    out = Path(args.out)
    result = {"configfile": str(args.configfile), "task": args.task, "images": {}}
    tilt_rows = []
    for name in cases(camp):
        pred = json.loads((out / f"predict-{name}" / "predictions.json").read_text())
        img = np.load(out / f"{name}-wrapped.npy").T.astype(float)
        truth_meta = json.loads((out / f"{name}-wrapped.truth.json").read_text())
        centres = np.asarray(pred["centres_px"], int)
        cnn = np.asarray(pred["predicted"], float).reshape(-1, 2)
        fit = gaussian_fit_polarization_batch(
            BfoPolarization.windows(img, centres, w), camp.pixel_A, a)
        truth = np.asarray(pred["truth_pm"], float)
        row = {"cells_read": int(len(centres)), "mistilt_mrad": truth_meta["mistilt_mrad"],
               "dose_e_per_A2": truth_meta["dose_e_per_A2"],
               "fit_failed": int((~np.isfinite(fit).all(axis=1)).sum())}
        fit0 = np.where(np.isfinite(fit), fit, 0.0)
        for method, p in (("cnn", cnn), ("gaussian_fit", fit0)):
            row[method] = {"mean_P_pm": p.mean(axis=0).tolist(),
                           "rms_error_pm": float(np.sqrt(np.nanmean(np.sum((p - truth) ** 2,
                                                                         axis=1)))),
                           **({"vector": vector_metrics(truth, p)}
                              if np.abs(truth).max() > 0 else {})}
        result["images"][name] = row
        print(name, json.dumps({k: row[k] for k in ("cnn", "gaussian_fit")})[:300], flush=True)
        if name.startswith("mistilt"):
            t = float(np.hypot(*truth_meta["mistilt_mrad"]))
            u = np.asarray(truth_meta["mistilt_mrad"], float) / max(t, 1e-12)
            axis = name.split("_")[1]  # x, xy, static or thick (along x)
            for method in ("cnn", "gaussian_fit"):
                m = np.asarray(row[method]["mean_P_pm"])
                tilt_rows.append((axis, method, t, float(m @ u) if t else 0.0,
                                  float(np.linalg.norm(m))))
        if args.plots and name.startswith("map"):
            d = Path(args.plots)
            d.mkdir(parents=True, exist_ok=True)
            field_maps(img, camp.pixel_A, centres,
                       [("truth", truth), ("CNN", cnn), ("CNN - truth", cnn - truth),
                        ("Gaussian fit", fit0), ("fit - truth", fit0 - truth)],
                       d / f"{name}.png",
                       f"{name}: {len(centres)} cells at {truth_meta['dose_e_per_A2']:g} e/Å², "
                       f"1 mrad mistilt; RMSE CNN {row['cnn']['rms_error_pm']:.1f} pm, "
                       f"Gaussian fit {row['gaussian_fit']['rms_error_pm']:.1f} pm")
    # apparent P per mrad: least-squares slope through the origin of the mean
    # apparent P along the tilt direction (and of its length)
    slopes = {}
    for axis in (*AXES, "static", "thick"):
        for method in ("cnn", "gaussian_fit"):
            rows = [r for r in tilt_rows if r[1] == method and (
                r[0] == axis or (r[2] == 0 and r[0] in AXES and axis in AXES))]
            t = np.array([r[2] for r in rows])
            along = np.array([r[3] for r in rows])
            length = np.array([r[4] for r in rows])
            slopes[f"{method}/{axis}"] = {
                "mistilt_mrad": t.tolist(), "apparent_P_along_tilt_pm": along.tolist(),
                "apparent_P_length_pm": length.tolist(),
                "pm_per_mrad": float(t @ along / (t @ t)) if (t @ t) > 0 else None}
    result["mistilt"] = slopes
    print(json.dumps(slopes, indent=1))
    if args.plots:
        from cbedflow.plots import plt, save

        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        for key, s in slopes.items():
            ax.plot(s["mistilt_mrad"], s["apparent_P_length_pm"], "o-",
                    label=f"{key} ({s['pm_per_mrad']:.2f} pm/mrad along the tilt)")
        ax.set_xlabel("specimen mistilt (mrad)")
        ax.set_ylabel("|mean apparent P| of a P = 0 crystal (pm)")
        ax.legend(fontsize=7)
        ax.set_title("Apparent polarization from mistilt alone", fontsize=9)
        save(fig, Path(args.plots) / "mistilt_apparent_P.png")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("simulate", "predict", "score"))
    ap.add_argument("--configfile", default=str(ROOT / "config" / "bfo-reproduce.yaml"))
    ap.add_argument("--run", default="results-bfo-reproduce")
    ap.add_argument("--task", default="polarization")
    ap.add_argument("--out", default="results-bfo-images")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plots", default=None)
    args = ap.parse_args(argv)
    {"simulate": simulate, "predict": predict, "score": score}[args.step](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
