"""Classification metrics and calibration (pure numpy; both environments)."""

from __future__ import annotations

import numpy as np


def fraction_by_thickness(hits, thickness_A) -> dict:
    """Mean of ``hits`` (bool per example) per thickness, keyed by the
    thickness [Å] with two decimals."""
    hits, t_all = np.asarray(hits), np.asarray(thickness_A, float)
    return {f"{t:.2f}": float(np.mean(hits[np.isclose(t_all, t, atol=0.01)]))
            for t in sorted(set(np.round(t_all, 2).tolist()))}


def classification_metrics(y, pred, classes, thickness_A, step_k, ordinal: bool = False
                           ) -> dict:
    """Metrics dict (pure numpy, shared by evaluation and tests)."""
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
    by_k = {}
    for kk in sorted(set(np.asarray(step_k).tolist())):
        m = np.asarray(step_k) == kk
        by_k[str(kk)] = float(np.mean(y[m] == pred[m]))
    out = {
        "accuracy": float(np.mean(y == pred)),
        "classes": list(classes),
        "per_class": per_class,
        "per_thickness_accuracy": fraction_by_thickness(y == pred, thickness_A),
        "accuracy_by_step_k": by_k,
        "confusion_matrix": cm.tolist(),
    }
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
