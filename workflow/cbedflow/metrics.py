"""Classification and regression metrics, calibration and interval coverage
(pure numpy; both environments)."""

from __future__ import annotations

import numpy as np


def fraction_by_thickness(hits, thickness_A) -> dict:
    """Mean of ``hits`` (bool per example) per thickness, keyed by the
    thickness [Å] with two decimals."""
    hits, t_all = np.asarray(hits), np.asarray(thickness_A, float)
    return {f"{t:.2f}": float(np.mean(hits[np.isclose(t_all, t, atol=0.01)]))
            for t in sorted(set(np.round(t_all, 2).tolist()))}


def classification_metrics(y, pred, classes, thickness_A, by: dict | None = None,
                           ordinal: bool = False) -> dict:
    """Metrics dict (pure numpy, shared by evaluation and tests). ``by``:
    label name -> per-example values; each gives ``accuracy_by_<name>``
    (accuracy per value)."""
    y, pred = np.asarray(y), np.asarray(pred)
    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    per_class = {}
    for i, name in enumerate(classes):
        tp = cm[i, i]
        per_class[name] = {
            "precision": float(tp / cm[:, i].sum()) if cm[:, i].sum() else None,
            "recall": float(tp / cm[i].sum()) if cm[i].sum() else None,
            "support": int(cm[i].sum()),
        }
    out = {
        "accuracy": float(np.mean(y == pred)),
        "classes": list(classes),
        "per_class": per_class,
        "per_thickness_accuracy": fraction_by_thickness(y == pred, thickness_A),
        "confusion_matrix": cm.tolist(),
    }
    for name, values in (by or {}).items():
        values = np.asarray(values)
        out[f"accuracy_by_{name}"] = {
            str(v): float(np.mean(y[values == v] == pred[values == v]))
            for v in sorted(set(values.tolist()))}
    if ordinal:
        near = np.abs(y - pred) <= 1
        out["within_one_class"] = float(np.mean(near))
        out["per_thickness_within_one_class"] = fraction_by_thickness(near, thickness_A)
    return out


def calibration(probs: np.ndarray, y: np.ndarray, bins: int) -> dict:
    """Expected calibration error and reliability-diagram bins of the top-class
    confidence (equal-width bins on [0, 1]; Guo et al. 2017)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        acc = float(correct[m].mean()) if n else None
        c = float(conf[m].mean()) if n else None
        if n:
            ece += n / len(y) * abs(acc - c)
        rows.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": n,
                     "accuracy": acc, "confidence": c})
    return {"ece": float(ece), "bins": rows, "mean_confidence": float(conf.mean()),
            "accuracy": float(correct.mean())}


def _per_target(a: np.ndarray, n_targets: int) -> np.ndarray:
    """(examples, ..., targets) -> (values, targets)."""
    return np.asarray(a, np.float64).reshape(-1, n_targets)


def regression_metrics(y, pred, names, units) -> dict:
    """MAE, RMSE and R² of every target (the last axis of ``y``; a curve's
    points pooled), in the target's unit, plus their mean R²."""
    names = list(names)
    y2, p2 = _per_target(y, len(names)), _per_target(pred, len(names))
    err = p2 - y2
    out = {}
    for j, name in enumerate(names):
        ok = np.isfinite(y2[:, j])  # a target a sample lacks is NaN (e.g. a thinner film)
        e, t = err[ok, j], y2[ok, j]
        if not ok.any():
            out[name] = {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan"),
                         "std_of_truth": float("nan"), "n": 0,
                         "unit": units[j] if j < len(units) else ""}
            continue
        ss_res = float(np.sum(e ** 2))
        ss_tot = float(np.sum((t - t.mean()) ** 2))
        out[name] = {"mae": float(np.mean(np.abs(e))),
                     "rmse": float(np.sqrt(np.mean(e ** 2))),
                     "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
                     "std_of_truth": float(t.std()), "n": int(ok.sum()),
                     "unit": units[j] if j < len(units) else ""}
    r2 = [v["r2"] for v in out.values() if np.isfinite(v["r2"])]
    return {"targets": out, "r2_mean": float(np.mean(r2)) if r2 else float("nan")}


def mae_by(y, pred, names, values, vector: bool = False) -> dict:
    """Mean absolute error (and RMSE, ``rmse``) of every target for every
    value of a per-example label ``values`` (e.g. a class label or a dose):
    {value: {"n": examples, target: MAE, "rmse": {target: RMSE}}}, the
    regression counterpart of ``accuracy_by_<label>``; ``vector``: the
    targets are one vector's components, and every value also gets
    :func:`vector_metrics` (``vector``)."""
    names = list(names)
    y2, p2 = _per_target(y, len(names)), _per_target(pred, len(names))
    values = np.asarray(values)
    per = len(y2) // max(1, len(values))  # a curve's points share their example's value
    v = np.repeat(values, per) if per > 1 else values
    out = {}
    min_norm = 0.1 * float(np.nanmax(np.linalg.norm(y2, axis=1))) if vector else None
    for val in np.unique(v):
        m = v == val
        e = p2[m] - y2[m]
        row = {"n": int(m.sum() // max(per, 1)),
               **{n: float(np.nanmean(np.abs(e[:, j]))) for j, n in enumerate(names)},
               "rmse": {n: float(np.sqrt(np.nanmean(e[:, j] ** 2)))
                        for j, n in enumerate(names)}}
        if vector:
            row["vector"] = vector_metrics(y2[m], p2[m], min_norm)
        out[str(val.item() if hasattr(val, "item") else val)] = row
    return out


def score_regression(y, pred, names, units, by: dict | None = None,
                     vector: bool = False) -> dict:
    """What every regression in the project reports, network or baseline:
    :func:`regression_metrics` (MAE, RMSE and R² per target), with
    ``vector`` also :func:`vector_metrics` (``vector``), and for every
    per-example label of ``by`` ({name: values}) the MAE by its values
    (``mae_by_<name>``, :func:`mae_by`)."""
    out = regression_metrics(y, pred, names, units)
    if vector:
        out["vector"] = vector_metrics(y, pred)
    for name, values in (by or {}).items():
        out[f"mae_by_{name}"] = mae_by(y, pred, names, values, vector=vector)
    return out


#: Predicted and true vectors within this angle [deg] have the right direction.
DIRECTION_TOLERANCE_DEG = 45.0


def vector_metrics(y, pred, min_norm: float | None = None,
                   tolerance_deg: float = DIRECTION_TOLERANCE_DEG) -> dict:
    """Errors of a vector target (the last axis holds its components, in
    one unit): ``rmse`` of the vector difference sqrt(mean |p - y|^2),
    ``mae`` (mean |p - y|), and ``direction_correct``: the fraction of
    examples whose predicted direction lies within ``tolerance_deg`` of the
    true one, among those whose true length is at least ``min_norm``
    (default: a tenth of the largest true length; shorter vectors have no
    direction worth scoring), with their number ``n_direction``."""
    y = np.asarray(y, np.float64).reshape(-1, np.shape(y)[-1])
    p = np.asarray(pred, np.float64).reshape(y.shape)
    ok = np.isfinite(y).all(axis=1) & np.isfinite(p).all(axis=1)
    y, p = y[ok], p[ok]
    d = np.linalg.norm(p - y, axis=1)
    ny, npred = np.linalg.norm(y, axis=1), np.linalg.norm(p, axis=1)
    if min_norm is None:
        min_norm = 0.1 * float(ny.max()) if len(ny) else 0.0
    has = ny >= max(min_norm, 1e-12)
    cos = np.sum(y[has] * p[has], axis=1) / np.maximum(ny[has] * npred[has], 1e-300)
    right = cos >= np.cos(np.radians(tolerance_deg))
    return {"rmse": float(np.sqrt(np.mean(d ** 2))) if len(d) else float("nan"),
            "mae": float(np.mean(d)) if len(d) else float("nan"),
            "direction_correct": float(right.mean()) if has.any() else float("nan"),
            "n_direction": int(has.sum()), "min_norm": float(min_norm),
            "tolerance_deg": float(tolerance_deg), "n": int(len(d)),
            "n_unscored": int((~ok).sum())}


def group_r2(targets: dict, groups) -> dict:
    """Mean R² of the targets of every group (``groups``: one group name per
    target, in the order of ``targets``), e.g. per atom type."""
    out: dict[str, list] = {}
    for (name, m), g in zip(targets.items(), groups):
        if np.isfinite(m["r2"]):
            out.setdefault(g, []).append(m["r2"])
    return {g: float(np.mean(v)) for g, v in out.items()}


#: Central normal intervals: name -> z (mean +- z std holds that fraction).
INTERVALS = {"68": 1.0, "95": 1.959964}


def interval_coverage(y, mean, std) -> dict:
    """Fraction of true values inside mean +- z std for every interval of
    :data:`INTERVALS` (a calibrated 68 % interval covers 0.68)."""
    y, mean, std = (np.asarray(a, np.float64) for a in (y, mean, std))
    return {k: float(np.mean(np.abs(y - mean) <= z * std)) for k, z in INTERVALS.items()}


def uncertainty_scale(y, mean, std) -> float:
    """Factor s such that mean +- s std covers 68.27 % of ``y`` (the
    68.27th percentile of |error| / std): MC-dropout spreads are too narrow
    or too wide by this factor. 1 if every std is zero."""
    y, mean, std = (np.asarray(a, np.float64) for a in (y, mean, std))
    ok = std > 0
    if not ok.any():
        return 1.0
    return float(np.quantile(np.abs(y - mean)[ok] / std[ok], 0.6827))
