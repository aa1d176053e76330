"""Measured ABF images for the tilt models: read, resample to the model's
pixel size, cut into overlapping windows of one zone cell; and the tilt maps
(the seed's Fig. 1-2: the tilt angles alpha, beta, gamma and the tilt system
across the image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plots import plt, save


def window_grid(shape: tuple[int, int], patch: tuple[int, int], stride: tuple[int, int]
                ) -> tuple[int, int]:
    """Windows of ``patch`` pixels at ``stride`` that fit in ``shape``."""
    return tuple((s - p) // d + 1 for s, p, d in zip(shape, patch, stride))


def read_measured(path, options: dict, manifest: dict, task) -> tuple[np.ndarray, dict]:
    """An ABF image (.tif, .dm3/.dm4, .emd, .hspy, .npy; ``datafiles.read_image``)
    as windows of the model's patch: the image resampled to the model's
    pixel size (bicubic, ``tf.image.resize``) and cut every half
    patch. The pixel size comes from the file or ``options['scan_step_A']``
    [Å] (both given: they must agree within 2 %). x is the image's column
    axis (the model's first axis, [001]pc in (110)pc images), y its rows.

    Returns (windows (n, px, py), info) with ``window_grid`` (windows along
    x, y), ``stride_px``, ``pixel_A`` (model) and ``file_pixel_A``, and the
    resampled image as ``data`` (for the map)."""
    from ...predict import read_resampled_image

    geo = manifest.get("geometry") or {}
    patch = tuple(int(v) for v in geo["input_shape"][:2])
    px_model = np.asarray(geo["pixel_A"], float)
    res, px, fmt = read_resampled_image(path, options, px_model, patch)
    stride = tuple(max(1, p // 2) for p in patch)
    grid = window_grid(res.shape, patch, stride)
    windows = np.stack([res[i * stride[0]:i * stride[0] + patch[0],
                            j * stride[1]:j * stride[1] + patch[1]]
                        for i in range(grid[0]) for j in range(grid[1])])
    info = {"examples": "window", "window_grid": list(grid), "stride_px": list(stride),
            "pixel_A": px_model.tolist(), "file_pixel_A": px.tolist(), "format": fmt,
            "image_shape": list(res.shape), "data": res}
    return windows, info


def plot_maps(data: np.ndarray, info: dict, result: dict, out) -> None:
    """The resampled image and the model's map: the tilt system of every
    window (classification) or alpha, beta, gamma [deg] (regression), each
    window drawn at its centre over half a window (the stride)."""
    grid = info["window_grid"]
    px = info["pixel_A"]
    stride = info["stride_px"]
    ext = (stride[0] * px[0] / 2, (stride[0] * (grid[0] + 1)) * px[0] - stride[0] * px[0] / 2,
           stride[1] * px[1] / 2, (stride[1] * (grid[1] + 1)) * px[1] - stride[1] * px[1] / 2)
    if result["kind"] == "classification":
        classes = result["classes"]
        idx = np.argmax(np.asarray(result["probabilities"]), axis=1).reshape(grid)
        maps = [("tilt system", idx, classes)]
    else:
        pred = np.asarray(result["predicted"]).reshape(grid + [-1])
        maps = [(f"{n} ({u})", pred[..., k], None)
                for k, (n, u) in enumerate(zip(result["targets"], result["units"]))]
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 3.6))
    axes[0].imshow(data.T, origin="lower", cmap="gray",
                   extent=(0, data.shape[0] * px[0], 0, data.shape[1] * px[1]))
    axes[0].set_title("ABF image (resampled)", fontsize=9)
    axes[0].set_xlabel("x (Å)")
    axes[0].set_ylabel("y (Å)")
    for ax, (title, m, classes) in zip(axes[1:], maps):
        if classes:
            im = ax.imshow(m.T, origin="lower", extent=ext, cmap="tab10", vmin=-0.5,
                           vmax=len(classes) - 0.5)
            cb = fig.colorbar(im, ax=ax, ticks=range(len(classes)), fraction=0.046)
            cb.ax.set_yticklabels(classes, fontsize=7)
        else:
            im = ax.imshow(m.T, origin="lower", extent=ext, cmap="viridis")
            fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_xlim(0, data.shape[0] * px[0])
        ax.set_ylim(0, data.shape[1] * px[1])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (Å)")
    fig.suptitle(f"{Path(result['input']).name}: {result['task']} per window "
                 f"({grid[0]} x {grid[1]})", fontsize=9)
    save(fig, out)
