"""Figures of the LAO/STO campaign: the dataset overview (dark field and
CBED montage) and the prediction map of measured 4D-STEM data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plots import plt, save
from .analysis import dark_field, virtual_detector


def dataset_overview(dataset: str | Path, out: str | Path, semiangle_mrad: float,
                     sample: int | None = None) -> None:
    """HAADF image of one simulation (the virtual annular detector recorded
    per probe) and the CBED montage along one line (as the paper's Fig.
    2d-e). Picks the first step structure by default."""
    import zarr

    ds = zarr.open_group(str(dataset), mode="r")
    if sample is None:
        rough = ds["rough"][...]
        sample = int(np.argmax(rough == 1)) if (rough == 1).any() else 0
    cbed = ds["cbed"][sample]  # (sx, sy, kx, ky)
    ang = ds.attrs["angular_sampling_mrad"]
    step = ds.attrs["scan_step_A"]
    if "haadf" in ds:  # the virtual HAADF detector recorded with the patterns
        df = ds["haadf"][sample]
        lo, hi = ds.attrs["haadf_range_mrad"]
        df_title = f"virtual HAADF ({lo:.0f}-{hi:.0f} mrad)"
    else:  # a dataset of an older cbedflow: the patterns' outer part
        df = dark_field(cbed, ang, semiangle_mrad)
        df_title = f"dark field (> {1.2 * semiangle_mrad:.0f} mrad)"
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
    ax.set_title(f"{name}: {df_title}")
    for i in range(nx):
        a = fig.add_subplot(gs[1, i])
        a.imshow(np.sqrt(cbed[i, line].T), origin="lower", cmap="gray")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"{i * step[0]:.1f} Å", fontsize=7)
    fig.suptitle(f"CBED along the dashed line (sqrt intensity), {ang[0]:.2f} mrad/pixel",
                 fontsize=9, y=0.02)
    save(fig, out)


def prediction_map(cbed: np.ndarray, angular_sampling_mrad, result: dict, scan_step_A,
                   out: str | Path) -> None:
    """New data's dark-field image (mean intensity in the outer half of the
    detector) beside the class probabilities of every scan line (MC-dropout
    mean)."""
    theta_max = min(cbed.shape[-2] // 2 * angular_sampling_mrad[0],
                    cbed.shape[-1] // 2 * angular_sampling_mrad[1])
    probs = np.asarray(result["probabilities"])
    std = np.asarray(result["probability_std"])
    classes = result["classes"]
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
    save(fig, out)
