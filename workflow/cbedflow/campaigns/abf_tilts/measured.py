"""Measured ABF images for the tilt models: read, resample to the model's
pixel size, cut into overlapping windows of one zone cell; and the tilt maps
(the seed's Fig. 1-2: the tilt angles alpha, beta, gamma and the tilt system
across the image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...datafiles import DataFileError, read_image
from ...plots import plt, save
from ...predict import PredictError

#: Largest relative difference between a pixel size in the file and the one
#: given on the command line.
PIXEL_TOLERANCE = 0.02
#: A measured pixel coarser than the model's by more than this is refused
#: (upsampling invents the detail the model reads).
COARSER_TOLERANCE = 0.05


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
    geo = manifest.get("geometry") or {}
    patch = tuple(int(v) for v in geo["input_shape"][:2])
    px_model = np.asarray(geo["pixel_A"], float)
    try:
        img = read_image(path, options.get("select"))
    except DataFileError as exc:
        raise PredictError(str(exc)) from None
    step = options.get("scan_step_A")
    px = None if img.pixel_size_A is None else np.asarray(img.pixel_size_A, float)
    if px is None and step is None:
        raise PredictError(f"{path}: the file has no pixel size; give --scan-step-A (Å per "
                           f"pixel; the model's is {px_model[0]:.4f} x {px_model[1]:.4f} Å)")
    if px is not None and step is not None and np.abs(px / step - 1).max() > PIXEL_TOLERANCE:
        raise PredictError(f"--scan-step-A={step} but {path} says {px.round(4).tolist()} Å per "
                           "pixel; give the right one or leave the flag out")
    px = px if px is not None else np.array([step, step], float)
    if np.any(px > px_model * (1 + COARSER_TOLERANCE)):
        raise PredictError(f"{path}: pixel {px.round(4).tolist()} Å is coarser than the model's "
                           f"{px_model.round(4).tolist()} Å by {float((px / px_model).max()):.2f}x; "
                           "record the image at a finer pixel size or train at this one")
    data = np.asarray(img.data, float).T  # (x, y)
    if not np.all(np.isfinite(data)) or data.min() < 0:
        raise PredictError(f"{path}: the image holds negative or non-finite values; expected "
                           "detector counts or intensities >= 0")
    # tf.image.resize: predict runs in the training environment (TensorFlow,
    # no scipy); bicubic over the whole image, so the new pixel is the model's
    # to within one pixel over the image
    import tensorflow as tf

    size = [max(1, int(round(n * p / q))) for n, p, q in zip(data.shape, px, px_model)]
    res = tf.image.resize(data[..., None], size, method="bicubic").numpy()[..., 0]
    res = res.astype(np.float64)
    if res.shape[0] < patch[0] or res.shape[1] < patch[1]:
        raise PredictError(f"{path}: {data.shape[0]} x {data.shape[1]} pixels of "
                           f"{px.round(4).tolist()} Å is smaller than one model window "
                           f"({patch[0] * px_model[0]:.1f} x {patch[1] * px_model[1]:.1f} Å)")
    res = np.clip(res, 0, None)
    stride = tuple(max(1, p // 2) for p in patch)
    grid = window_grid(res.shape, patch, stride)
    windows = np.stack([res[i * stride[0]:i * stride[0] + patch[0],
                            j * stride[1]:j * stride[1] + patch[1]]
                        for i in range(grid[0]) for j in range(grid[1])])
    info = {"examples": "window", "window_grid": list(grid), "stride_px": list(stride),
            "pixel_A": px_model.tolist(), "file_pixel_A": px.tolist(), "format": img.format,
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
