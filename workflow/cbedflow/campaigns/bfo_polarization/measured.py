"""Measured HAADF images for the polarization models: read, resample to the
model's pixel size, cut one sub-image per cell (centred on every B-site
column the numpy column finder locates, or on a regular grid of the lattice
period), and the polarization map (the seed's Fig. 2). A file with a
``<name>.truth.json`` beside it (a simulated image: ``b_sites_px`` (n, 2) in
the file's pixels and ``polarization_pm`` (n, 2)) gets the truth and the
difference drawn beside the prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...predict import PredictError
from .columns import find_b_sites
from .plots import field_maps


def truth_path(path) -> Path:
    p = Path(path)
    return p.with_name(p.name.split(".")[0] + ".truth.json")


def read_measured(path, options: dict, manifest: dict, task) -> tuple[np.ndarray, dict]:
    """Sub-images of the model's window around every B-site column found
    (``centre: b_site``) or on a grid of one window per cell (``grid``).

    Returns (windows (n, w, w), info) with ``centres_px`` (n, 2, in the
    resampled image), ``pixel_A`` and the resampled image as ``data``."""
    from ...predict import read_resampled_image

    geo = manifest.get("geometry") or {}
    w = int(geo["window_px"])
    px_model = float(geo["pixel_A"])
    a_A = float(geo["a_A"])
    img, px, fmt = read_resampled_image(path, options, [px_model, px_model], (w, w))
    h = w // 2
    if geo.get("centre", "b_site") == "b_site":
        centres = np.rint(find_b_sites(img, px_model, a_A)).astype(int)
        if len(centres) == 0:
            raise PredictError(f"{path}: no B-site columns found (bright A and dimmer B "
                               f"columns {a_A} Å apart expected at {px_model:.3f} Å per pixel)")
    else:
        step = a_A / px_model
        gx = np.arange(h, img.shape[0] - h, step)
        gy = np.arange(h, img.shape[1] - h, step)
        centres = np.rint(np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
                          ).astype(int)
    inside = ((centres >= h) & (centres < np.array(img.shape) - h)).all(axis=1)
    centres = centres[inside]
    if len(centres) == 0:
        raise PredictError(f"{path}: no whole {w}-pixel window around any column")
    off = np.arange(-h, h + 1)
    windows = img[(centres[:, 0, None] + off)[:, :, None], (centres[:, 1, None] + off)[:, None]]
    info = {"examples": "sub-image per B-site column", "centres_px": centres.tolist(),
            "pixel_A": px_model, "file_pixel_A": np.asarray(px).tolist(), "format": fmt,
            "image_shape": list(img.shape), "data": img}
    tp = truth_path(path)
    if tp.exists():
        t = json.loads(tp.read_text())
        scale = np.asarray(px, float) / px_model  # file pixels -> resampled pixels
        tc = np.asarray(t["b_sites_px"], float) * scale
        d = np.linalg.norm(tc[None] - centres[:, None], axis=-1)
        nearest = d.argmin(axis=1)
        ok = d[np.arange(len(centres)), nearest] < 0.25 * a_A / px_model
        truth = np.asarray(t["polarization_pm"], float)[nearest]
        truth[~ok] = np.nan
        info["truth_pm"] = truth.tolist()
        info["truth_file"] = str(tp)
    return windows, info


def plot_maps(data: np.ndarray, info: dict, result: dict, out) -> None:
    """The image with the predicted P per cell; with a truth file the truth
    and the difference beside it."""
    pred = np.asarray(result["predicted"], float).reshape(-1, 2)
    centres = np.asarray(info["centres_px"], float)
    panels = [("prediction (CNN)", pred)]
    title = f"{Path(result['input']).name}: P per cell ({len(pred)} cells)"
    if "truth_pm" in info:
        truth = np.asarray(info["truth_pm"], float)
        err = np.linalg.norm(pred - truth, axis=1)
        panels += [("truth", truth), ("prediction - truth", pred - truth)]
        title += f"; RMSE {np.sqrt(np.nanmean(err ** 2)):.1f} pm"
    field_maps(data, float(info["pixel_A"]), centres, panels, out, title)
