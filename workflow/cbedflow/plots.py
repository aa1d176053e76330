"""Figures of the report (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .storage import atomic_file  # noqa: E402


def save(fig, out: str | Path) -> None:
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def training_curves(history_csv: str | Path, out: str | Path) -> None:
    """Training and validation loss and accuracy per epoch."""
    with open(history_csv) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{history_csv}: no epochs logged")
    ep = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    metric = "accuracy" if "accuracy" in rows[0] else "mae"
    for ax, key in zip(axes, ("loss", metric)):
        ax.plot(ep, [float(r[key]) for r in rows], label="training")
        if f"val_{key}" in rows[0]:
            ax.plot(ep, [float(r[f"val_{key}"]) for r in rows], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
    if "accuracy" in rows[0]:
        axes[1].set_ylim(0, 1.02)
    save(fig, out)


def confusion(metrics_json: str | Path, out: str | Path) -> None:
    """Confusion matrix of the held-out test split."""
    m = json.loads(Path(metrics_json).read_text())
    cm = np.array(m["confusion_matrix"])
    classes = m["classes"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(classes), 1.0 + 0.6 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{m['task']}: accuracy {m['accuracy']:.3f} (n = {m['n_test']})")
    save(fig, out)


def _show(fig, cell, x: np.ndarray, title: str = "") -> None:
    """Draw one example in a gridspec cell: a sequence of images (3D), an
    image (2D) or a curve (1D)."""
    if x.ndim == 3:
        sub = cell.subgridspec(1, x.shape[0], wspace=0.05)
        for j in range(x.shape[0]):
            ax = fig.add_subplot(sub[0, j])
            ax.imshow(np.sqrt(np.clip(x[j], 0, None)).T, origin="lower", cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(title, fontsize=7)
        return
    ax = fig.add_subplot(cell)
    if x.ndim == 2:
        ax.imshow(x.T, origin="lower", cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.plot(x.ravel(), lw=0.8)
        ax.tick_params(labelsize=6)
    ax.set_ylabel(title, fontsize=7)


def example_predictions(test: str | Path, predictions: str | Path, out: str | Path,
                        n: int = 4) -> None:
    """Test examples beside what the model made of them (as the paper's Figs.
    3c and 4c): classification, up to ``n`` examples of different classes
    with their MC-dropout class probabilities (+-1 std over passes);
    regression, ``n`` examples spread over the first target's range with
    the prediction and its MC-dropout interval against the truth."""
    import zarr

    g = zarr.open_group(str(test), mode="r")
    p = np.load(predictions)
    y = p["y"]
    index = p["index"] if "index" in p else np.arange(len(y))
    regression = not np.issubdtype(y.dtype, np.integer)
    if regression:
        first = y.reshape(len(y), -1)[:, 0]
        order = np.argsort(first)
        picks = sorted(set(int(order[int(round(q))]) for q in
                           np.linspace(0, len(y) - 1, min(n, len(y)))))
    else:
        classes = list(g.attrs["classes"])
        probs = p["mc_mean"] if "mc_mean" in p else p["probabilities"]
        std = p["mc_std"] if "mc_std" in p else np.zeros_like(probs)
        present = sorted(set(y.tolist()))
        wanted = [present[int(round(i))] for i in np.linspace(0, len(present) - 1,
                                                                min(n, len(present)))]
        picks = [int(np.flatnonzero(y == c)[0]) for c in dict.fromkeys(wanted)]
    shape = g["x"].shape[1:]
    width = (shape[0] * 0.8 if len(shape) == 3 else 2.5) + 3.2
    fig = plt.figure(figsize=(width, 1.4 * len(picks) + 0.4))
    gs = fig.add_gridspec(len(picks), 2, width_ratios=[width - 3.2, 3.2], hspace=0.7)
    for r, i in enumerate(picks):
        x = g["x"][int(index[i])]
        ax_title = f"true {classes[y[i]]}" if not regression else f"example {int(index[i])}"
        _show(fig, gs[r, 0], x, ax_title)
        ax = fig.add_subplot(gs[r, 1])
        if regression:
            t, m, s = (np.ravel(a[i]) for a in (y, p["mc_mean"], p["mc_std"]))
            xs = np.arange(len(t))
            if len(t) > 12:  # a curve of targets
                ax.plot(xs, t, color="k", lw=0.8, label="true")
                ax.plot(xs, m, color="tab:red", lw=0.8, label="predicted")
                ax.fill_between(xs, m - s, m + s, color="tab:red", alpha=0.3, lw=0)
            else:
                ax.errorbar(xs, m, yerr=s, fmt="o", color="tab:red", ms=3, capsize=2,
                            label="predicted +-1 std")
                ax.plot(xs, t, "kx", label="true")
                names = list(g.attrs.get("targets", [])) or [str(k) for k in xs]
                ax.set_xticks(xs, names[:len(xs)], fontsize=6, rotation=30)
            ax.tick_params(axis="y", labelsize=6)
            if r == 0:
                ax.legend(fontsize=6)
            continue
        pred = int(np.argmax(probs[i]))
        colors = ["tab:green" if c == y[i] else "tab:gray" for c in range(len(classes))]
        ax.bar(range(len(classes)), probs[i], yerr=std[i], color=colors, capsize=1.5)
        ax.set_ylim(0, 1)
        ax.set_xticks(range(len(classes)),
                      classes if len(classes) < 4 else [str(c) for c in range(len(classes))],
                      fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        ok = "correct" if pred == y[i] else "wrong"
        ax.set_title(f"predicted {classes[pred]} ({100 * probs[i, pred]:.0f}%, {ok})",
                     fontsize=7)
    what = ("MC-dropout predictions against the truth" if regression else
            "MC-dropout probabilities (green = true class, bars = +-1 std over passes)")
    fig.suptitle(f"test examples (sequences: sqrt intensity) and {what}", fontsize=8, y=1.0)
    save(fig, out)


def reliability(metrics_json: str | Path, out: str | Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, for the
    plain softmax and the MC-dropout mean, with their ECE."""
    m = json.loads(Path(metrics_json).read_text())
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="perfect calibration")
    for key, cal, mk in (("softmax", m["softmax_calibration"], "s"),
                         (f"MC dropout ({m['mc_dropout']['samples']} passes)",
                          m["mc_dropout"]["calibration"], "o")):
        rows = [b for b in cal["bins"] if b["count"]]
        ax.plot([b["confidence"] for b in rows], [b["accuracy"] for b in rows], marker=mk,
                label=f"{key}: ECE {cal['ece']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{m['task']}/{m['model']['id']}: n = {m['n_test']}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    save(fig, out)


def _rmse_of(row: dict) -> float:
    """One RMSE of a ``mae_by`` row: the vector's, else the targets' mean."""
    if "vector" in row:
        return row["vector"]["rmse"]
    return float(np.mean(list(row["rmse"].values())))


def _rmse_by(ax, models: dict, key: str) -> None:
    """RMSE of every model and its baseline per value of a breakdown label
    (``mae_by_<label>``; the vector RMSE for a vector target)."""
    def order(v: str):
        try:
            return (0, float(v), "")
        except ValueError:
            return (1, 0.0, v)

    values = sorted({v for m in models.values() for v in m["cnn"].get(key, {})}, key=order)
    xs = np.arange(len(values))
    w = 0.8 / max(1, 2 * len(models))
    for i, (mid, m) in enumerate(models.items()):
        for j, (who, d) in enumerate((("network", m["cnn"]), ("baseline", m["baseline"]))):
            rows = d.get(key, {})
            ax.bar(xs + (2 * i + j - len(models)) * w + w / 2,
                   [_rmse_of(rows[v]) if v in rows else np.nan for v in values], w,
                   label=f"{who} {mid}", hatch="//" if j else None)
    ax.set_xticks(xs, values, fontsize=7)
    ax.set_xlabel(key[len("mae_by_"):], fontsize=8)
    ax.set_ylabel("held-out RMSE (target units)", fontsize=8)
    ax.legend(fontsize=6)
    ax.set_title(f"RMSE by {key[len('mae_by_'):]}", fontsize=9)


def accuracy_overview(summary_json: str | Path, task: str, out: str | Path) -> None:
    """Every model of ``task`` against its baseline. Classification:
    per-thickness test accuracy (CNN, MC dropout, baseline) and the accuracy
    broken down by the task's breakdown label (``accuracy_by_<label>``, e.g.
    a position class) of models that test on several of its values.
    Regression: R² per target of every model and its baseline."""
    doc = json.loads(Path(summary_json).read_text())
    sm = doc["tasks"][task]
    models = sm["models"]
    if sm.get("kind") == "regression":
        keys = sorted({k for m in models.values() for k in m["cnn"] if k.startswith("mae_by_")})
        fig, axes = plt.subplots(1, 1 + len(keys), figsize=(7 + 3.6 * len(keys), 3.6),
                                 squeeze=False)
        ax = axes[0, 0]
        for bax, key in zip(axes[0, 1:], keys):
            _rmse_by(bax, models, key)
        labels, cnn_r2, base_r2 = [], [], []
        for mid, m in models.items():
            for name, v in m["cnn"]["targets"].items():
                labels.append(f"{mid}\n{name}")
                cnn_r2.append(v["r2"])
                base_r2.append((m["baseline"].get("targets") or {}).get(name, {}).get("r2",
                                                                                     np.nan))
        xs = np.arange(len(labels))
        ax.bar(xs - 0.2, cnn_r2, 0.4, label="network")
        ax.bar(xs + 0.2, base_r2, 0.4, label="baseline")
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_ylabel("held-out R²")
        ax.set_ylim(min(0.0, np.nanmin(cnn_r2 + base_r2)), 1.05)
        ax.axhline(0, color="k", lw=0.6)
        ax.legend(fontsize=7)
        ax.set_title(f"{task}: R² per model and target", fontsize=9)
        save(fig, out)
        return
    # one panel per breakdown label (the task's own first, then its also_by)
    keys = list(dict.fromkeys(k for m in models.values() for k in m["cnn"]
                              if k.startswith("accuracy_by_")))
    fig, axes = plt.subplots(1, 1 + max(1, len(keys)), figsize=(5.5 * (1 + max(1, len(keys))),
                                                                 3.8), squeeze=False)
    axes = axes[0]
    ax = axes[0]
    labels, series = [], {"CNN": [], "CNN, MC dropout": [], "baseline": []}
    for mid, m in models.items():
        for t, acc in m["cnn"]["per_thickness_accuracy"].items():
            labels.append(f"{mid}\n{float(t):g} Å")
            series["CNN"].append(acc)
            series["CNN, MC dropout"].append(m["cnn"]["mc_dropout_per_thickness_accuracy"][t])
            series["baseline"].append(m["baseline"]["per_thickness_accuracy"].get(t))
    w = 0.27
    for i, (name, vals) in enumerate(series.items()):
        xs = np.arange(len(labels)) + (i - 1) * w
        ax.bar(xs, [v if v is not None else 0 for v in vals], w, label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out accuracy")
    ax.axhline(sm.get("target_accuracy") or 0, color="k", ls=":", lw=1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{task}: accuracy per model and thickness", fontsize=9)
    for i, ax in enumerate(axes[1:]):
        key = keys[i] if i < len(keys) else None
        name = (key or "")[len("accuracy_by_"):]
        title = (sm.get("breakdown_title") if i == 0 else "") or name
        for mid, m in models.items():
            by = {int(k): v for k, v in m["cnn"].get(key, {}).items() if int(k) >= 0}
            if len(by) > 1:
                ks = sorted(by)
                ax.plot(ks, [by[k] for k in ks], marker="o", label=f"CNN {mid}")
                bk = {int(k): v for k, v in m["baseline"].get(key, {}).items()}
                ax.plot(ks, [bk.get(k, np.nan) for k in ks], marker="x", ls="--",
                        label=f"baseline {mid}")
                ax.set_xticks(ks)
        ax.set_xlabel(title)
        ax.set_ylabel("accuracy of the examples with this value")
        ax.set_ylim(0, 1.05)
        if ax.lines:
            ax.legend(fontsize=6, ncol=2)
        ax.set_title(f"by {title}" if key else "no breakdown", fontsize=9)
    save(fig, out)


def parity(metrics_json: str | Path, predictions: str | Path, out: str | Path) -> None:
    """Predicted (MC-dropout mean) against true value of every target, with
    the identity line, R² and MAE in the target's unit."""
    m = json.loads(Path(metrics_json).read_text())
    p = np.load(predictions)
    names = list(m["targets"])
    y = p["y"].reshape(-1, len(names))
    pred = p["mc_mean"].reshape(-1, len(names))
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        t = m["targets"][name]
        ax.scatter(y[:, j], pred[:, j], s=4, alpha=0.5)
        lo, hi = np.nanmin([y[:, j].min(), pred[:, j].min()]), np.nanmax(
            [y[:, j].max(), pred[:, j].max()])
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
        unit = f" [{t['unit']}]" if t["unit"] else ""
        ax.set_xlabel(f"true {name}{unit}", fontsize=8)
        ax.set_ylabel(f"predicted {name}{unit}", fontsize=8)
        ax.set_title(f"R² {t['r2']:.3f}, MAE {t['mae']:.3g}", fontsize=8)
    fig.suptitle(f"{m['task']}/{m['model']['id']}: parity on {m['n_test']} test examples",
                 fontsize=9)
    save(fig, out)


def residuals(metrics_json: str | Path, predictions: str | Path, out: str | Path) -> None:
    """Residual (predicted - true) against the true value per target, with
    the MC-dropout +-1 std of every prediction as error bars and the
    interval coverage."""
    m = json.loads(Path(metrics_json).read_text())
    p = np.load(predictions)
    names = list(m["targets"])
    y = p["y"].reshape(-1, len(names))
    res = p["mc_mean"].reshape(-1, len(names)) - y
    std = p["mc_std"].reshape(-1, len(names)) * float(p["calibration_scale"])
    cov = m["mc_dropout"]["calibrated_coverage"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.2), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        stride = max(1, len(y) // 400)  # at most ~400 error bars
        ax.errorbar(y[::stride, j], res[::stride, j], yerr=std[::stride, j], fmt=".", ms=2,
                    lw=0.5, alpha=0.6)
        ax.axhline(0, color="k", lw=0.8)
        unit = f" [{m['targets'][name]['unit']}]" if m["targets"][name]["unit"] else ""
        ax.set_xlabel(f"true {name}{unit}", fontsize=8)
        ax.set_ylabel(f"residual{unit}", fontsize=8)
    fig.suptitle(f"{m['task']}/{m['model']['id']}: residuals, calibrated MC-dropout +-1 std "
                 f"(68/95 % intervals cover {cov['68']:.2f}/{cov['95']:.2f})", fontsize=9)
    save(fig, out)
