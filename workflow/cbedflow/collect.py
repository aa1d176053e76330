"""Collect simulation units into one dataset (zarr v3).

Averages the phonon-configuration batches of each (structure, thickness),
whether a unit holds one thickness or a whole series at exit planes, stacks
the samples and stores labels and provenance. Every input is checked
(complete group, shape, finite values, total intensity in (0, 1]) and a bad
one is named instead of being trained on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .provenance import package_versions
from .storage import CorruptOutputError, atomic_group, digest, open_complete, write_attrs

#: Labels stored per sample: name -> dtype.
LABELS = {
    "rough": "int8",
    "step_k": "int8",
    "step_depth_A": "float32",
    "thickness_A": "float32",
    "intermix_fraction": "float32",
    "structure_index": "int32",
}

#: Allowed excess of the total intensity over 1 (float32 rounding).
_INTENSITY_TOL = 1e-3


def check_unit(path: str | Path, data: np.ndarray, shape: tuple | None) -> None:
    """Validate one unit's CBED array; raise CorruptOutputError naming ``path``."""
    if shape is not None and data.shape != shape:
        raise CorruptOutputError(f"{path}: cbed shape {data.shape} differs from {shape} "
                                 "of the other units")
    if not np.all(np.isfinite(data)):
        n = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise CorruptOutputError(f"{path}: cbed holds {n} non-finite values")
    total = data.sum(axis=(-2, -1), dtype=np.float64)
    if total.min() <= 0 or total.max() > 1 + _INTENSITY_TOL:
        raise CorruptOutputError(
            f"{path}: total CBED intensity per pattern spans [{total.min():.4g}, "
            f"{total.max():.4g}]; valid: (0, 1] of the incident probe")


def _checksum(arr: np.ndarray) -> str:
    return digest(arr)


def unit_samples(group) -> list[tuple[dict, int | None]]:
    """(labels, exit-plane index) of every sample a unit holds: one sample
    (index None) for a single-thickness unit, one per exit plane for a
    thickness-series unit (``cbed`` then has a leading exit-plane axis)."""
    if "plane_labels" in group.attrs:
        return [(lab, i) for i, lab in enumerate(group.attrs["plane_labels"])]
    return [(group.attrs["labels"], None)]


def collect(
    units: Sequence[str | Path],
    out: str | Path,
    provenance: dict | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Average, validate and stack ``units`` into the dataset group ``out``.

    Every unit is opened before anything is written; a thickness-series unit
    contributes one sample per exit plane.
    """
    groups = {}
    for p in units:
        groups[str(p)] = open_complete(p)
    by_sample: dict[tuple[str, float], list[tuple[str, int | None]]] = defaultdict(list)
    sample_labels: dict[tuple[str, float], dict] = {}
    for p, g in groups.items():
        for lab, plane in unit_samples(g):
            key = (lab["structure"], lab["thickness_A"])
            by_sample[key].append((p, plane))
            sample_labels.setdefault(key, lab)
    keys = sorted(by_sample, key=lambda k: (k[0], k[1]))
    names = sorted({k[0] for k in keys})
    first = groups[str(units[0])]
    shape = tuple(first["cbed"].shape[-4:])
    n = len(keys)
    checksums = {}
    t0 = time.perf_counter()
    with atomic_group(out) as ds:
        cbed = ds.create_array("cbed", shape=(n,) + shape, dtype="float32",
                               chunks=(1,) + shape, fill_value=0.0,
                               compressors=None)  # float32 patterns do not compress
        labels = {k: np.zeros(n, dtype=dt) for k, dt in LABELS.items()}
        for i, key in enumerate(keys):
            parts = sorted(by_sample[key], key=lambda x: (x[0], x[1] or 0))
            weights = np.array([groups[p].attrs["num_configs"] for p, _ in parts], float)
            acc = np.zeros(shape, dtype=np.float64)
            for (p, plane), w in zip(parts, weights):
                data = groups[p]["cbed"][...] if plane is None else groups[p]["cbed"][plane]
                name = p if plane is None else f"{p}[exit plane {plane}]"
                check_unit(name, data, shape)
                checksums[name] = _checksum(data)
                acc += data * w
            mean = (acc / weights.sum()).astype(np.float32)
            cbed[i] = mean
            lab = sample_labels[key]
            labels["rough"][i] = lab["rough"]
            labels["step_k"][i] = lab["step_k"]
            labels["step_depth_A"][i] = np.nan if lab["step_depth_A"] < 0 else lab["step_depth_A"]
            labels["thickness_A"][i] = lab["thickness_A"]
            labels["intermix_fraction"][i] = lab["intermix_fraction"]
            labels["structure_index"][i] = names.index(key[0])
            progress(f"sample {i + 1}/{n}: {key[0]} t={key[1]:.2f} Å "
                     f"({len(parts)} batches, {time.perf_counter() - t0:.1f} s)")
        for k, v in labels.items():
            arr = ds.create_array(k, shape=v.shape, dtype=v.dtype, chunks=v.shape)
            arr[...] = v
        a = first.attrs
        write_attrs(ds, {
            "dims": ["sample", "scan_x", "scan_y", "kx", "ky"],
            "structure_names": names,
            "labels": list(LABELS),
            "classes": {"rough": ["diffuse", "step"]},
            "scan_step_A": a["scan_step_A"],
            "angular_sampling_mrad": a["angular_sampling_mrad"],
            "reciprocal_sampling_invA": a["reciprocal_sampling_invA"],
            "real_space_sampling_A": a["real_space_sampling_A"],
            "settings": a["settings"],
            "abtem_version": a["abtem_version"],
            "cbedflow_version": __version__,
            "unit_checksums": {Path(p).as_posix(): c for p, c in sorted(checksums.items())},
            "provenance": provenance or {},
            "versions": package_versions(("abtem", "ase", "zarr", "numpy", "cbedflow")),
            "complete": True,
        })
    progress(f"dataset: {out} ({n} samples, shape {shape})")
    return Path(out)
