"""Held-out evaluation of a trained model: classification (accuracy,
confusion, calibration of the softmax and of MC dropout) or regression (MAE,
RMSE and R² per target, MC-dropout intervals and their coverage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..storage import atomic_file, write_json
from .data import zarr_dataset
from .manifest import check_model_geometry, load_model_manifest, model_indices


def heads(output) -> list:
    """The outputs of a model as a list, one per head (a two-head network
    returns ``[main, aux]``, a one-head network one array)."""
    return list(output) if isinstance(output, (list, tuple)) else [output]


def mc_dropout_predictions(model, ds, samples: int, seed: int = 0, all_heads: bool = False):
    """Outputs of ``samples`` forward passes with dropout on (MC dropout, Gal
    and Ghahramani 2016). Returns (samples, examples, ...) of the main head,
    or one such array per head with ``all_heads``."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    passes = []
    for _ in range(samples):
        outs = [heads(model(x, training=True)) for x, _ in ds]
        passes.append([np.concatenate([o[h].numpy() for o in outs])
                       for h in range(len(outs[0]))])
    per_head = [np.stack([p[h] for p in passes]) for h in range(len(passes[0]))]
    return per_head if all_heads else per_head[0]


#: the name the classification code used (softmax probabilities per pass)
mc_dropout_probabilities = mc_dropout_predictions


def _load(model_path: str):
    import tensorflow as tf

    return tf.keras.models.load_model(model_path, compile=False)


def unscale(pred: np.ndarray, scaling: dict | None, spread: bool = False) -> np.ndarray:
    """Standardised network outputs back in the targets' units, ``scaling``
    the manifest's ``target_scaling`` / ``aux_scaling`` (``mean``, ``std``;
    None: unscaled). ``spread``: ``pred`` is a standard deviation (scaled,
    not shifted)."""
    if scaling is None:
        return pred
    if spread:
        return pred * np.asarray(scaling["std"])
    return pred * np.asarray(scaling["std"]) + np.asarray(scaling["mean"])


def _run(model, path: str, manifest: dict, mc_samples: int):
    """(predictions, MC passes, indices, group, aux) of ``model`` (loaded) on
    its examples of ``path``: the main head's; ``aux`` is the second head's
    (predictions, MC passes), standardised, or None."""
    import zarr

    params = {"model": manifest.get("model", {"id": "all"}),
              "nominal_thicknesses_A": manifest.get("nominal_thicknesses_A", [])}
    idx = model_indices(path, params)
    tin = bool(params["model"].get("thickness_input", False))
    transform = (manifest.get("task_spec") or {}).get("transform", "sqrt_standardize")
    ds, _, shape = zarr_dataset(path, cache=False, indices=idx, thickness_input=tin,
                                transform=transform,
                                input_scaling=manifest.get("input_scaling"))
    g = zarr.open_group(str(path), mode="r")
    check_model_geometry(manifest, dict(g.attrs), shape, str(path))
    batched = ds.batch(64)
    preds = heads(model.predict(batched, verbose=0))
    mcs = (mc_dropout_predictions(model, batched, mc_samples, all_heads=True)
           if mc_samples > 1 else [p[None] for p in preds])
    aux = (preds[1], mcs[1]) if len(preds) > 1 else None
    return preds[0], mcs[0], idx, g, aux


def evaluate(model_path: str, test_path: str, task, out_json: str, out_predictions: str,
             mc_samples: int = 30, bins: int = 10, validation_path: str | None = None) -> dict:
    """Held-out metrics of one model on its test examples (its thickness
    subset). ``task``: the :class:`~cbedflow.tasks.Task`. Classification:
    accuracy, per-class precision/recall, per-thickness accuracy, confusion
    matrix, the breakdown by ``task.breakdown``, within +-1 class (ordinal
    tasks), calibration (ECE, reliability bins) of the plain softmax and of
    the MC-dropout mean over ``mc_samples`` passes. Regression: see
    :func:`evaluate_regression`."""
    if task.is_regression:
        return evaluate_regression(model_path, test_path, task, out_json, out_predictions,
                                   mc_samples, validation_path)
    from ..examples import check_examples
    from ..metrics import calibration, classification_metrics

    classes = list(task.classes)
    check_examples(test_path, len(classes))
    manifest = load_model_manifest(model_path)
    probs, mc, idx, g, aux = _run(_load(model_path), test_path, manifest, mc_samples)
    mc_mean = mc.mean(axis=0)
    y = g["y"][...].astype(int)[idx]
    pred = probs.argmax(axis=1)
    by = {b: g[b][...][idx] for b in task.breakdowns}
    metrics = classification_metrics(y, pred, classes, g["thickness_A"][...][idx], by,
                                     ordinal=task.ordinal)
    metrics["kind"] = "classification"
    metrics["model"] = manifest.get("model", {"id": "all"})
    metrics["n_test"] = int(len(idx))
    metrics["n_test_structures"] = int(len(set(g["structure_index"][...][idx].tolist())))
    metrics["task"] = g.attrs["task"]
    metrics["mc_dropout"] = {
        "samples": int(mc_samples),
        "accuracy": float(np.mean(mc_mean.argmax(axis=1) == y)),
        "calibration": calibration(mc_mean, y, bins),
    }
    metrics["softmax_calibration"] = calibration(probs, y, bins)
    extra = {}
    if aux is not None:  # the second (regression) head of the same network
        metrics["aux_head"], extra = _aux_head_metrics(aux, g, idx, manifest, task,
                                                       {**by, task.labels[0]: y})
    with atomic_file(out_predictions) as tmp:
        np.savez(tmp, probabilities=probs, mc_mean=mc_mean, mc_std=mc.std(axis=0), y=y,
                 predicted=pred, index=idx, thickness_A=g["thickness_A"][...][idx], **extra)
    write_json(Path(out_json), metrics)
    return metrics


def _aux_head_metrics(aux, g, idx, manifest: dict, task, by: dict) -> tuple[dict, dict]:
    """Metrics of a two-head network's second (regression) head on the test
    examples: MAE, RMSE and R² per target (plain and MC-dropout mean) and
    the MAE by every breakdown; and the arrays kept in the predictions file
    (``aux_predicted``, ``aux_mc_mean``, ``aux_mc_std``, ``aux_y``)."""
    from ..metrics import regression_metrics, score_regression

    names = list(manifest.get("aux") or task.aux)
    units = list(manifest.get("aux_units") or task.aux_units or [""] * len(names))
    scaling = manifest.get("aux_scaling")
    pred, mc = unscale(aux[0], scaling), unscale(aux[1], scaling)
    mean = mc.mean(axis=0)
    y = g["y_aux"][...][idx].astype(np.float64)
    out = score_regression(y, pred, names, units, by)
    out["mc_dropout"] = {k: v for k, v in regression_metrics(y, mean, names, units).items()
                         if k in ("targets", "r2_mean", "mae_mean_std")}
    return out, {"aux_predicted": pred, "aux_mc_mean": mean, "aux_mc_std": mc.std(axis=0),
                 "aux_y": y}


def evaluate_regression(model_path: str, test_path: str, task, out_json: str,
                        out_predictions: str, mc_samples: int = 30,
                        validation_path: str | None = None) -> dict:
    """Regression metrics of one model on its test examples: MAE, RMSE and
    R² per target (in the targets' units) of the plain prediction and of the
    MC-dropout mean; MC-dropout intervals (mean +- z std) and the fraction
    of test targets inside them at 68 % and 95 %, raw and calibrated (the
    std scaled by the factor that gives 68 % coverage on the validation
    split, when ``validation_path`` is given)."""
    from ..examples import check_examples
    from ..metrics import (interval_coverage, regression_metrics, score_regression,
                           uncertainty_scale)

    check_examples(test_path, None)
    manifest = load_model_manifest(model_path)
    scaling = manifest.get("target_scaling")
    names = list(manifest.get("targets") or task.target_names)
    units = list(manifest.get("units") or task.units or [""] * len(names))
    model = _load(model_path)  # once, for the test and the validation split
    pred_s, mc_s, idx, g, _ = _run(model, test_path, manifest, mc_samples)
    pred = unscale(pred_s, scaling)
    mc = unscale(mc_s, scaling)
    mean, std = mc.mean(axis=0), mc.std(axis=0)
    y = g["y"][...][idx].astype(np.float64)
    metrics = score_regression(y, pred, names, units,
                               {b: g[b][...][idx] for b in task.breakdowns}, task.vector)
    metrics.update(kind="regression", task=g.attrs["task"],
                   model=manifest.get("model", {"id": "all"}), n_test=int(len(idx)),
                   n_test_structures=int(len(set(g["structure_index"][...][idx].tolist()))))
    scale, where = 1.0, "none (no validation split given)"
    if validation_path is not None and mc_samples > 1:
        vp, vmc, vidx, vg, _ = _run(model, validation_path, manifest, mc_samples)
        vmc = unscale(vmc, scaling)
        scale = uncertainty_scale(vg["y"][...][vidx].astype(np.float64), vmc.mean(axis=0),
                                  vmc.std(axis=0))
        where = "validation split"
    metrics["mc_dropout"] = {
        "samples": int(mc_samples),
        **{k: v for k, v in regression_metrics(y, mean, names, units).items()
           if k in ("targets", "r2_mean", "mae_mean_std")},
        "coverage": interval_coverage(y, mean, std),
        "calibration_scale": float(scale),
        "calibrated_on": where,
        "calibrated_coverage": interval_coverage(y, mean, std * scale),
        "mean_std": [float(v) for v in std.reshape(-1, len(names)).mean(axis=0)],
    }
    with atomic_file(out_predictions) as tmp:
        np.savez(tmp, predicted=pred, mc_mean=mean, mc_std=std, y=y, index=idx,
                 thickness_A=g["thickness_A"][...][idx], calibration_scale=scale)
    write_json(Path(out_json), metrics)
    return metrics
