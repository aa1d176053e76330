"""Model manifests (provenance, geometry, target scaling) and the examples
a model variant trains and tests on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..storage import digest, write_json


def model_indices(path: str | Path, params: dict) -> np.ndarray:
    """Examples of ``path`` that the model of ``params`` (``model`` spec,
    ``nominal_thicknesses_A``) trains or is tested on."""
    import zarr

    from ..tasks import ModelSpec, select_examples

    spec = ModelSpec(**params.get("model", {"id": "all"}))
    g = zarr.open_group(str(path), mode="r")
    idx = select_examples(g["thickness_A"][...], spec,
                          list(params.get("nominal_thicknesses_A") or []))
    if len(idx) == 0:
        raise ValueError(f"{path}: no examples at thickness {spec.thickness_A} Å for model "
                         f"{spec.id!r}")
    return idx


def write_model_manifest(path: Path, params: dict, train_path: str, shape, size: int,
                         scaling: dict | None = None, in_scaling: dict | None = None,
                         aux_scaling: dict | None = None) -> None:
    """Provenance of a trained model, the data geometry it accepts (the input
    shape and the campaign's ``geometry_keys`` of the example group) and the
    standardisation of its regression targets (and of its inputs, per point,
    for a task with ``input_scaling``; of the second head's targets for a
    task with ``aux``)."""
    import zarr

    from ..provenance import package_versions

    g = zarr.open_group(str(train_path), mode="r")
    geometry = {"input_shape": list(shape)}
    for key in params.get("geometry_keys", []):
        geometry[key] = g.attrs.get(key)
    write_json(path, {
        "task": params["task"],
        "task_spec": params["task_spec"],
        "campaign": params.get("campaign"),
        "classes": list(g.attrs["classes"]),
        "targets": list(g.attrs.get("targets", [])),
        "units": list(g.attrs.get("units", [])),
        "target_scaling": scaling,
        "input_scaling": in_scaling,
        **({"aux": list(g.attrs.get("aux", [])), "aux_units": list(g.attrs.get("aux_units", [])),
            "aux_scaling": aux_scaling} if aux_scaling is not None else {}),
        "geometry": geometry,
        "train_params_hash": digest(json.dumps(params, sort_keys=True)),
        "model": params.get("model", {"id": "all", "thickness_A": None,
                                      "thickness_input": False}),
        "nominal_thicknesses_A": list(params.get("nominal_thicknesses_A") or []),
        "seed": params["seed"], "ranks": size,
        "versions": package_versions(("tensorflow-cpu", "tensorflow", "horovod", "zarr",
                                      "numpy", "cbedflow")),
        "training_data": str(train_path),
    })


def load_model_manifest(model_path: str | Path, task: str | None = None) -> dict:
    """The manifest beside ``model_path`` (written by :func:`train`); refuses a
    missing model or manifest, and a model of another task than ``task``."""
    model_path = Path(model_path)
    if not model_path.exists():
        raise ValueError(f"{model_path}: no such model file")
    mpath = model_path.parent / "manifest.json"
    if not mpath.exists():
        raise ValueError(f"{model_path}: no manifest.json beside it; expected a model "
                         "trained by cbedflow (models/<task>/<model>/)")
    manifest = json.loads(mpath.read_text())
    if task is not None and manifest.get("task") != task:
        raise ValueError(f"{model_path}: the model was trained for task "
                         f"{manifest.get('task')!r}, not {task!r}")
    return manifest


def check_model_geometry(manifest: dict, data_attrs: dict, shape, where: str) -> None:
    """Refuse data whose geometry differs from what the model was trained on:
    the example shape and every geometry key of the manifest (numbers within
    0.1 %, anything else equal)."""
    geo = manifest["geometry"]
    problems = []
    if list(shape) != list(geo["input_shape"]):
        problems.append(f"example shape {list(shape)} != model input {geo['input_shape']}")
    for key, want in geo.items():
        if key == "input_shape" or want in (None, [], {}):
            continue
        have = data_attrs.get(key)
        if have is None:
            continue
        try:
            same = np.allclose(np.asarray(have, float), np.asarray(want, float), rtol=1e-3)
        except (TypeError, ValueError):
            same = have == want
        if not same:
            problems.append(f"{key} {have} != model's {want}")
    if data_attrs.get("task") and data_attrs["task"] != manifest["task"]:
        problems.append(f"task {data_attrs['task']!r} != model's {manifest['task']!r}")
    if problems:
        raise ValueError(f"{where}: does not match the model ({'; '.join(problems)})")
