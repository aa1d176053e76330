"""Apply a trained model to measured data: ``python -m cbedflow predict``.

The campaign reads the data into examples of the model's geometry
(``Campaign.read_measured``: formats, sampling, checks) and draws the map
(``Campaign.plot_measured``); this module loads the model, runs it with MC
dropout and writes ``predictions.json``, ``predictions.csv`` and ``map.png``.

Everything is checked before the model is loaded, and the outputs are
written into a temporary directory that replaces ``--out-dir`` only on
success: on bad input nothing is written.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .storage import atomic_dir


class PredictError(ValueError):
    """Bad predict input (one line naming the problem and what is expected)."""


#: Largest relative difference between a pixel size in the file and the one
#: given on the command line.
PIXEL_TOLERANCE = 0.02
#: A measured pixel coarser than the model's by more than this is refused
#: (upsampling invents the detail the model reads).
COARSER_TOLERANCE = 0.05


def read_resampled_image(path, options: dict, px_model, patch):
    """A measured image (.tif, .dm3/.dm4, .emd, .hspy, .npy;
    ``datafiles.read_image``) resampled to the model's pixel size ``px_model``
    (x, y) [Å] (bicubic, ``tf.image.resize``: predict runs in the training
    environment, which has no scipy). The pixel size comes from the file or
    ``options['scan_step_A']`` [Å] (both given: they must agree within 2 %);
    a coarser pixel than the model's, an image smaller than ``patch``
    (pixels) or negative values are refused in one line. x is the image's
    column axis, y its rows.

    Returns (image (x, y) float64 >= 0, file pixel (x, y) [Å], format).
    """
    from .datafiles import DataFileError, read_image

    px_model = np.asarray(px_model, float)
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
    return np.clip(res, 0, None), px, img.format


#: Largest array predict reads [bytes]: the data is held in float64 while it is
#: resampled, so the limit is a third of the machine's memory.
def memory_limit_bytes() -> int:
    """A third of the physical memory [bytes] (``os.sysconf``)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 3
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


def predict(camp, model_path: str | Path, task_name: str, data_path: str | Path,
            out_dir: str | Path, options: dict | None = None, thickness_A: float | None = None,
            mc_samples: int = 30) -> dict:
    """Check everything, then write ``predictions.json``, ``predictions.csv``
    and ``map.png`` (the model's output for every example of the data) to
    ``out_dir``. ``options``: the campaign reader's (sampling, noise floor)."""
    from .learn.manifest import load_model_manifest
    from .tasks import THICKNESS_SCALE_A, get_task

    options = dict(options or {})
    task = get_task(camp, task_name)
    manifest = load_model_manifest(model_path, task.name)
    spec = manifest.get("model") or {"id": "all", "thickness_A": None, "thickness_input": False}
    if spec.get("thickness_input") and thickness_A is None:
        raise PredictError(f"model {spec['id']!r} takes the sample thickness as an input; "
                           "give --thickness-A")
    if spec.get("thickness_A") and thickness_A is not None and abs(
            thickness_A - spec["thickness_A"]) > 0.1 * spec["thickness_A"]:
        raise PredictError(f"--thickness-A={thickness_A} but model {spec['id']!r} was trained "
                           f"at {spec['thickness_A']} Å only")
    if int(mc_samples) < 1:
        raise PredictError(f"mc_samples={mc_samples} is invalid; valid: >= 1 (1 = no MC dropout)")
    floor = options.get("negative_floor") or 0.0
    if not floor >= 0:
        raise PredictError(f"negative floor {floor} is invalid; valid: >= 0 counts")
    x, info = camp.read_measured(data_path, options, manifest, task)
    x = np.asarray(x, np.float32)
    data = info.pop("data", None)

    import tensorflow as tf

    from .learn.data import preprocess
    from .learn.evaluate import heads, mc_dropout_predictions, unscale

    model = tf.keras.models.load_model(str(model_path), compile=False)
    ts = manifest.get("task_spec") or {}
    xs = preprocess(tf.convert_to_tensor(x), ts.get("transform", "sqrt_standardize"),
                    x.ndim - 1, manifest.get("input_scaling"))
    inputs = xs
    if spec.get("thickness_input"):
        inputs = (xs, tf.fill((len(x), 1), float(thickness_A) / THICKNESS_SCALE_A))
    ds = tf.data.Dataset.from_tensors((inputs, tf.zeros(len(x), tf.int32)))
    outs = heads(model.predict(inputs, verbose=0))
    mcs = (mc_dropout_predictions(model, ds, mc_samples, all_heads=True) if mc_samples > 1
           else [o[None] for o in outs])
    out, mc = outs[0], mcs[0]  # the main head
    mean, std = mc.mean(axis=0), mc.std(axis=0)
    result = {
        "task": task.name, "kind": task.kind, "model": str(model_path), "model_spec": spec,
        "input": str(data_path), **info, "thickness_A": thickness_A,
        "mc_dropout_samples": int(mc_samples), "negative_floor": float(floor),
    }
    if len(mcs) > 1:  # a two-head network: its second (regression) head as well
        sc = manifest.get("aux_scaling")
        result["aux"] = {"targets": list(manifest.get("aux") or task.aux),
                         "units": list(manifest.get("aux_units") or task.aux_units),
                         "predicted": unscale(mcs[1].mean(axis=0), sc).tolist(),
                         "predicted_std": unscale(mcs[1].std(axis=0), sc, spread=True).tolist()}
    if task.is_regression:
        sc = manifest.get("target_scaling")
        mean, std = unscale(mean, sc), unscale(std, sc, spread=True)
        names = list(manifest.get("targets") or task.target_names)
        result.update(targets=names, units=list(manifest.get("units") or task.units),
                      predicted=mean.tolist(), predicted_std=std.tolist())
        if mean.ndim == 3:  # a curve of targets per example: one row per point
            header = ["example", "point"] + names + [f"{n}_std" for n in names]
            rows = [[i, j] + [f"{v:.6g}" for v in mp] + [f"{v:.6g}" for v in sp]
                    for i, (m, s) in enumerate(zip(mean, std))
                    for j, (mp, sp) in enumerate(zip(m, s))]
        else:
            header = ["example"] + [f"{n}" for n in names] + [f"{n}_std" for n in names]
            rows = [[i] + [f"{v:.6g}" for v in np.ravel(m)] + [f"{v:.6g}" for v in np.ravel(s)]
                    for i, (m, s) in enumerate(zip(mean, std))]
    else:
        classes = list(manifest["classes"])
        result.update(classes=classes, probabilities=mean.tolist(),
                      probability_std=std.tolist(), softmax=out.tolist(),
                      predicted=[classes[i] for i in mean.argmax(axis=1)])
        header = ["line", "predicted"] + [f"p_{c}" for c in classes]
        rows = [[i, classes[int(r.argmax())]] + [f"{v:.6f}" for v in r]
                for i, r in enumerate(mean)]
    with atomic_dir(out_dir) as tmp:
        (tmp / "predictions.json").write_text(json.dumps(result, indent=2))
        with open(tmp / "predictions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        camp.plot_measured(data, info, result, tmp / "map.png")
        write_prediction_arrays(tmp / "predictions.zarr", result)
    return result


def write_prediction_arrays(path: Path, result: dict) -> None:
    """The model's output as a zarr v3 group with named dimensions
    (``dimension_names``) and ``units``/``long_name`` attributes, so that
    ``xarray.open_zarr(path, consolidated=False)`` opens it as labelled
    arrays. Classification: ``probabilities``, ``probability_std`` and
    ``softmax`` (example, class) and ``predicted_class`` (example, the index
    into the ``classes`` attribute), and for a two-head network
    ``aux_predicted`` and ``aux_predicted_std`` (example, target; names and
    units in ``aux_targets``/``aux_target_units``); regression: ``predicted`` and
    ``predicted_std`` (example[, point], target), units in ``target_units``."""
    import zarr

    g = zarr.open_group(str(path), mode="w")

    def put(name, values, dims, **attrs):
        a = np.asarray(values)
        arr = g.create_array(name, shape=a.shape, dtype=a.dtype, chunks=a.shape or (1,),
                             dimension_names=dims, attributes=attrs)
        arr[...] = a

    meta = {"task": result["task"], "kind": result["kind"], "input": result["input"],
            "model": result["model"]}
    if result["kind"] == "classification" or "classes" in result:
        classes = list(result["classes"])
        prob = np.asarray(result["probabilities"], np.float32)
        dims = ("example", "class")
        put("probabilities", prob, dims, units="1",
            long_name="class probability (MC-dropout mean)")
        put("probability_std", np.asarray(result["probability_std"], np.float32), dims,
            units="1", long_name="class probability, MC-dropout standard deviation")
        put("softmax", np.asarray(result["softmax"], np.float32), dims, units="1",
            long_name="class probability (dropout off)")
        put("predicted_class", prob.argmax(axis=1).astype(np.int16), ("example",),
            long_name="predicted class (index into the classes attribute)")
        meta["classes"] = classes
        if result.get("aux"):  # a two-head network's regression head
            aux = result["aux"]
            put("aux_predicted", np.asarray(aux["predicted"], np.float32), ("example", "target"),
                long_name="second head: predicted targets (MC-dropout mean)")
            put("aux_predicted_std", np.asarray(aux["predicted_std"], np.float32),
                ("example", "target"), long_name="second head: MC-dropout standard deviation")
            meta["aux_targets"] = list(aux["targets"])
            meta["aux_target_units"] = list(aux["units"])
    else:
        mean = np.asarray(result["predicted"], np.float32)
        dims = ("example", "point", "target") if mean.ndim == 3 else ("example", "target")
        put("predicted", mean, dims, long_name="predicted targets (MC-dropout mean)")
        put("predicted_std", np.asarray(result["predicted_std"], np.float32), dims,
            long_name="predicted targets, MC-dropout standard deviation")
        meta["targets"] = list(result["targets"])
        meta["target_units"] = list(result["units"])
    g.attrs.update(meta)
