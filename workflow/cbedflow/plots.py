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
                        n: int = 2) -> None:
    """Image sequences of test examples with the predicted class and its
    softmax probability (as the paper's Fig. 3c): one per class if possible."""
    g = zarr.open_group(str(test), mode="r")
    p = np.load(predictions)
    classes = g.attrs["classes"]
    y, probs = p["y"], p["probabilities"]
    picks = []
    for c in range(len(classes)):
        idx = np.flatnonzero(y == c)
        if len(idx):
            picks.append(int(idx[0]))
        if len(picks) == n:
            break
    npos = g["x"].shape[1]
    fig, axes = plt.subplots(len(picks), npos, figsize=(npos * 0.9, 1.3 * len(picks)),
                             squeeze=False)
    for r, i in enumerate(picks):
        vol = g["x"][i]
        pred = int(np.argmax(probs[i]))
        for j in range(npos):
            ax = axes[r, j]
            ax.imshow(np.sqrt(np.clip(vol[j], 0, None)).T, origin="lower", cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"true {classes[y[i]]}", fontsize=8)
        ok = "correct" if pred == y[i] else "wrong"
        axes[r, npos // 2].set_title(
            f"predicted {classes[pred]} ({100 * probs[i, pred]:.1f}% softmax, {ok})", fontsize=9)
    _save(fig, out)
