"""Figures of the report (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import zarr  # noqa: E402

from .analysis import dark_field  # noqa: E402
from .storage import atomic_file  # noqa: E402


def _save(fig, out: str | Path) -> None:
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def dataset_overview(dataset: str | Path, out: str | Path, semiangle_mrad: float,
                     sample: int | None = None) -> None:
    """Dark-field image of one simulation and the CBED montage along one line
    (as the paper's Fig. 2d-e). Picks the first step structure by default."""
    ds = zarr.open_group(str(dataset), mode="r")
    if sample is None:
        rough = ds["rough"][...]
        sample = int(np.argmax(rough == 1)) if (rough == 1).any() else 0
    cbed = ds["cbed"][sample]  # (sx, sy, kx, ky)
    ang = ds.attrs["angular_sampling_mrad"]
    step = ds.attrs["scan_step_A"]
    df = dark_field(cbed, ang, semiangle_mrad)
    name = ds.attrs["structure_names"][int(ds["structure_index"][sample])]
    nx, ny = cbed.shape[:2]
    line = 0
    fig = plt.figure(figsize=(12, 4.2))
    gs = fig.add_gridspec(2, nx, height_ratios=[2.2, 1])
    ax = fig.add_subplot(gs[0, : max(2, nx // 3)])
    ax.imshow(df.T, origin="lower", cmap="inferno", aspect="equal",
              extent=(-step[0] / 2, (nx - 0.5) * step[0], -step[1] / 2, (ny - 0.5) * step[1]))
    ax.axhline(line * step[1], color="cyan", ls="--", lw=1)
    ax.set_xlabel("x across the interface [Å]")
    ax.set_ylabel("y [Å]")
    ax.set_title(f"{name}: dark field (> {1.2 * semiangle_mrad:.0f} mrad)")
    for i in range(nx):
        a = fig.add_subplot(gs[1, i])
        a.imshow(np.sqrt(cbed[i, line].T), origin="lower", cmap="gray")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"{i * step[0]:.1f} Å", fontsize=7)
    fig.suptitle(f"CBED along the dashed line (sqrt intensity), {ang[0]:.2f} mrad/pixel",
                 fontsize=9, y=0.02)
    _save(fig, out)


def training_curves(history_csv: str | Path, out: str | Path) -> None:
    """Training and validation loss and accuracy per epoch."""
    with open(history_csv) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{history_csv}: no epochs logged")
    ep = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(ep, [float(r[key]) for r in rows], label="training")
        if f"val_{key}" in rows[0]:
            ax.plot(ep, [float(r[f"val_{key}"]) for r in rows], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
    axes[1].set_ylim(0, 1.02)
    _save(fig, out)


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
    _save(fig, out)


def example_predictions(test: str | Path, predictions: str | Path, out: str | Path,
                        n: int = 4) -> None:
    """Image sequences of test examples with the MC-dropout class
    probabilities beside them (as the paper's Figs. 3c and 4c): up to ``n``
    examples of different classes, spread over the classes."""
    g = zarr.open_group(str(test), mode="r")
    p = np.load(predictions)
    classes = list(g.attrs["classes"])
    y, probs = p["y"], p["mc_mean"] if "mc_mean" in p else p["probabilities"]
    std = p["mc_std"] if "mc_std" in p else np.zeros_like(probs)
    index = p["index"] if "index" in p else np.arange(len(y))
    present = sorted(set(y.tolist()))
    wanted = [present[int(round(i))] for i in np.linspace(0, len(present) - 1,
                                                            min(n, len(present)))]
    picks = [int(np.flatnonzero(y == c)[0]) for c in dict.fromkeys(wanted)]
    npos = g["x"].shape[1]
    fig = plt.figure(figsize=(npos * 0.8 + 3.2, 1.3 * len(picks) + 0.4))
    gs = fig.add_gridspec(len(picks), npos + 1, width_ratios=[1] * npos + [4], hspace=0.7)
    for r, i in enumerate(picks):
        vol = g["x"][int(index[i])]
        pred = int(np.argmax(probs[i]))
        for j in range(npos):
            ax = fig.add_subplot(gs[r, j])
            ax.imshow(np.sqrt(np.clip(vol[j], 0, None)).T, origin="lower", cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"true {classes[y[i]]}", fontsize=7)
        ax = fig.add_subplot(gs[r, npos])
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
    fig.suptitle("test examples: CBED along the line (sqrt) and MC-dropout probabilities "
                 "(green = true class, bars = +-1 std over passes)", fontsize=8, y=1.0)
    _save(fig, out)


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
    _save(fig, out)


def accuracy_overview(summary_json: str | Path, task: str, out: str | Path) -> None:
    """Per-thickness test accuracy of every model of ``task`` (CNN, MC dropout
    and the ring-feature baseline), and accuracy by step class k of the
    models that test on several step classes."""
    sm = json.loads(Path(summary_json).read_text())["tasks"][task]
    models = sm["models"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    labels, series = [], {"CNN": [], "CNN, MC dropout": [], "ring-feature LR": []}
    for mid, m in models.items():
        for t, acc in m["cnn"]["per_thickness_accuracy"].items():
            labels.append(f"{mid}\n{float(t):g} Å")
            series["CNN"].append(acc)
            series["CNN, MC dropout"].append(m["cnn"]["mc_dropout_per_thickness_accuracy"][t])
            series["ring-feature LR"].append(m["baseline"]["per_thickness_accuracy"].get(t))
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
    ax = axes[1]
    for mid, m in models.items():
        by_k = {int(k): v for k, v in m["cnn"]["accuracy_by_step_k"].items() if int(k) >= 0}
        if len(by_k) > 1:
            ks = sorted(by_k)
            ax.plot(ks, [by_k[k] for k in ks], marker="o", label=f"CNN {mid}")
            bk = {int(k): v for k, v in m["baseline"]["accuracy_by_step_k"].items()}
            ax.plot(ks, [bk.get(k, np.nan) for k in ks], marker="x", ls="--",
                    label=f"LR {mid}")
    ax.set_xlabel("step class k (step depth = k/10 of the thickness)")
    ax.set_ylabel("accuracy on rough structures of class k")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("by step class (shallow steps look like intermixing)", fontsize=9)
    _save(fig, out)


def prediction_map(cbed: np.ndarray, angular_sampling_mrad, probs: np.ndarray,
                   std: np.ndarray, classes: list[str], scan_step_A, out: str | Path) -> None:
    """New data's dark-field image (mean intensity in the outer half of the
    detector) beside the class probabilities of every scan line (MC-dropout
    mean)."""
    theta_max = min(cbed.shape[-2] // 2 * angular_sampling_mrad[0],
                    cbed.shape[-1] // 2 * angular_sampling_mrad[1])
    from .analysis import virtual_detector

    df = virtual_detector(cbed, angular_sampling_mrad, 0.5 * theta_max, theta_max)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6),
                             gridspec_kw={"width_ratios": [1.2, 1]})
    nx, ny = df.shape
    axes[0].imshow(df.T, origin="lower", cmap="inferno", aspect="equal",
                   extent=(0, nx * scan_step_A[0], 0, ny * scan_step_A[1]))
    axes[0].set_xlabel("x across the interface [Å]")
    axes[0].set_ylabel("y [Å]")
    axes[0].set_title(f"dark field ({0.5 * theta_max:.0f}-{theta_max:.0f} mrad)", fontsize=9)
    im = axes[1].imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                        origin="lower", interpolation="nearest")
    axes[1].set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    axes[1].set_ylabel("scan line (y)" if len(probs) > 1 else "all lines averaged")
    for (i, j), v in np.ndenumerate(probs):
        if probs.shape[0] * probs.shape[1] <= 60:
            axes[1].text(j, i, f"{v:.2f}\n±{std[i, j]:.2f}", ha="center", va="center",
                         fontsize=6, color="w" if v < 0.5 else "k")
    fig.colorbar(im, ax=axes[1], label="probability (MC dropout)")
    axes[1].set_title("class probabilities per scan line", fontsize=9)
    _save(fig, out)
