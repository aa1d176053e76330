"""Apply the ABF tilt models (and their baseline) to image sets outside the
training distribution and score them next to the in-distribution test split.

    # 1. the networks (training environment: TensorFlow)
    PYTHONPATH=workflow .venv/train/bin/python benchmarks/abf_generalise.py cnn \\
        --run results-abf-reproduce --set CaTiO3=results-abf-cto/dataset.zarr \\
        --set "outside residuals"=results-abf-outside/dataset.zarr \\
        --out docs/benchmarks/abf_generalisation.json
    # 2. the baseline (simulation environment: scikit-learn), same arguments
    PYTHONPATH=workflow .venv/simulate/bin/python benchmarks/abf_generalise.py baseline ...

``--run``: the output directory of the training campaign (its
``models/<task>/all`` and ``tasks/<task>/{train_augmented,validation,test}.zarr``).
Every image of a ``--set`` dataset (a collected ``abf_tilts`` dataset, e.g.
another composition or residuals outside the training ranges, simulated with
the same imaging settings) is one example, unrolled and noise-free, as the
test split's. The networks: the manifest's transform and input scaling, the
plain prediction (no MC dropout). The baseline: the campaign's features (the
patch's Fourier amplitudes), logistic / ridge regression fitted on the
training examples with the regularisation picked on the validation split
(as ``cbedflow.baseline``). Reported per set: tilt-system accuracy overall
and by system; angle MAE [deg] per angle and by system. The JSON gains one
key per method (``cnn``, ``baseline``), so the two runs write one file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

ANGLES = ("alpha_deg", "beta_deg", "gamma_deg")


def load_sets(run: Path, sets: list[str]) -> dict:
    """{name: (x, system, angles)}: the run's test split plus every --set."""
    import zarr

    out = {}
    cls = zarr.open_group(str(run / "tasks" / "tilt_system" / "test.zarr"), mode="r")
    reg = zarr.open_group(str(run / "tasks" / "tilt_angles" / "test.zarr"), mode="r")
    out["in distribution (test split)"] = (cls["x"][...], cls["y"][...].astype(int),
                                           reg["y"][...], reg["x"][...])
    for spec in sets:
        name, _, path = spec.partition("=")
        ds = zarr.open_group(path, mode="r")
        x = ds["abf"][...]
        angles = np.stack([ds[a][...] for a in ANGLES], axis=1)
        out[name] = (x, ds["tilt_system"][...].astype(int), angles, x)
    return out


def score(system, pred_cls, angles, pred_angles, classes) -> dict:
    acc = {classes[k]: float(np.mean(pred_cls[system == k] == k))
           for k in np.unique(system)}
    mae = {a: float(np.mean(np.abs(pred_angles[:, j] - angles[:, j])))
           for j, a in enumerate(ANGLES)}
    mae_by = {classes[k]: float(np.mean(np.abs(pred_angles[system == k] - angles[system == k])))
              for k in np.unique(system)}
    return {"n": int(len(system)), "accuracy": float(np.mean(pred_cls == system)),
            "accuracy_by_system": acc, "mae_deg": mae,
            "mae_deg_mean": float(np.mean(list(mae.values()))), "mae_deg_by_system": mae_by}


def run_cnn(run: Path, sets: dict) -> dict:
    import tensorflow as tf

    from cbedflow.learn.data import preprocess
    from cbedflow.learn.manifest import load_model_manifest

    models, manifests = {}, {}
    for task in ("tilt_system", "tilt_angles"):
        path = run / "models" / task / "all" / "model.keras"
        models[task] = tf.keras.models.load_model(str(path), compile=False)
        manifests[task] = load_model_manifest(path, task)
    classes = manifests["tilt_system"]["classes"]
    out = {}
    for name, (x_cls, system, angles, x_reg) in sets.items():
        preds = {}
        for task, x in (("tilt_system", x_cls), ("tilt_angles", x_reg)):
            m = manifests[task]
            ts = m.get("task_spec") or {}
            xs = preprocess(tf.convert_to_tensor(np.asarray(x, np.float32)),
                            ts.get("transform", "standardize"), 2, m.get("input_scaling"))
            p = models[task].predict(xs, verbose=0)
            sc = m.get("target_scaling")
            if sc is not None:
                p = p * np.asarray(sc["std"]) + np.asarray(sc["mean"])
            preds[task] = p
        out[name] = score(system, preds["tilt_system"].argmax(axis=1), angles,
                          preds["tilt_angles"], classes)
        print(f"cnn {name}: accuracy {out[name]['accuracy']:.3f}, MAE "
              f"{out[name]['mae_deg_mean']:.2f} deg ({out[name]['n']} images)", flush=True)
    return out


def run_baseline(run: Path, sets: dict) -> dict:
    import zarr
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cbedflow.baseline import ALPHA_GRID, C_GRID, select_and_fit
    from cbedflow.campaigns.abf_tilts import SYSTEMS, AbfTilts

    feats = AbfTilts.baseline_features
    fitted = {}
    for task, grid, make in (
            ("tilt_system", C_GRID, lambda c: make_pipeline(
                StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=0))),
            ("tilt_angles", ALPHA_GRID, lambda a: make_pipeline(StandardScaler(),
                                                                Ridge(alpha=a)))):
        tr = zarr.open_group(str(run / "tasks" / task / "train_augmented.zarr"), mode="r")
        va = zarr.open_group(str(run / "tasks" / task / "validation.zarr"), mode="r")
        ftr, fva = feats(None, tr["x"][...], {}), feats(None, va["x"][...], {})
        ytr, yva = tr["y"][...], va["y"][...]
        fitted[task], best, scores = select_and_fit(make, grid, ftr, ytr, fva, yva)
        print(f"baseline {task}: regularisation {best} (validation score {scores[best]:.3f})",
              flush=True)
    out = {}
    for name, (x_cls, system, angles, x_reg) in sets.items():
        pc = fitted["tilt_system"].predict(feats(None, x_cls, {}))
        pa = fitted["tilt_angles"].predict(feats(None, x_reg, {}))
        out[name] = score(system, pc, angles, pa, list(SYSTEMS))
        print(f"baseline {name}: accuracy {out[name]['accuracy']:.3f}, MAE "
              f"{out[name]['mae_deg_mean']:.2f} deg", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("cnn", "baseline"))
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--set", action="append", default=[], help="NAME=dataset.zarr")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    sets = load_sets(args.run, args.set)
    result = run_cnn(args.run, sets) if args.what == "cnn" else run_baseline(args.run, sets)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc[args.what] = result
    doc["run"] = str(args.run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
