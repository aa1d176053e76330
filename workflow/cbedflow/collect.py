"""Collect simulation units into one dataset (zarr v3).

Averages the batches of each sample (weighted by a unit's ``num_configs``,
e.g. frozen-phonon configurations), whether a unit holds one sample or
several along a leading axis (``plane_labels``), stacks the samples and
stores the campaign's labels (declared once, ``Campaign.labels``) and
provenance. Every input is checked (complete group, shape, the campaign's
``check_signal``) and a bad one is named instead of being trained on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .provenance import package_versions
from .storage import (
    CorruptOutputError,
    atomic_group,
    digest,
    open_complete,
    StackWriter,
    stack_chunk_length,
    write_attrs,
)

#: Label added to the campaign's labels: index into ``structure_names``.
INDEX_LABEL = ("structure_index", "int32")


def check_unit(camp, path: str | Path, data: np.ndarray, shape: tuple | None) -> None:
    """Validate one unit's signal; raise CorruptOutputError naming ``path``."""
    if shape is not None and data.shape != shape:
        raise CorruptOutputError(f"{path}: {camp.signal} shape {data.shape} differs from "
                                 f"{shape} of the other units")
    camp.check_signal(str(path), data)


def unit_samples(group) -> list[tuple[dict, int | None]]:
    """(labels, exit-plane index) of every sample a unit holds: one sample
    (index None) for a unit of one sample, one per entry of ``plane_labels``
    for a unit of several (its signal then has a leading sample axis)."""
    if "plane_labels" in group.attrs:
        return [(lab, i) for i, lab in enumerate(group.attrs["plane_labels"])]
    return [(group.attrs["labels"], None)]


#: A unit array up to this size is read whole once (its samples are then
#: sliced from memory) instead of one sample at a time.
WHOLE_UNIT_BYTES = 256 * 2 ** 20


def _read(groups: dict, p: str, name: str, plane: int | None, cache: dict) -> np.ndarray:
    """Array ``name`` of unit ``p`` (sample ``plane`` of a unit of several):
    a small unit array is read once and kept while its unit is current
    (samples are collected in order, so a unit's samples come together; the
    batches of one sample may alternate between a few units), a large one a
    sample at a time."""
    arr = groups[p][name]
    if plane is None:
        return arr[...]
    if arr.nbytes > WHOLE_UNIT_BYTES:
        return arr[plane]
    if (p, name) not in cache:
        while cache and sum(v.nbytes for v in cache.values()) + arr.nbytes > 2 * WHOLE_UNIT_BYTES:
            cache.pop(next(iter(cache)))  # the oldest unit array
        cache[(p, name)] = arr[...]
    return cache[(p, name)][plane]


def _with_arrays(camp, groups: dict, part: tuple, labels: dict, cache: dict) -> dict:
    """A sample's label dict with every label the unit stores as an array
    (a curve per sample) read from it."""
    p, plane = part
    g = groups[p]
    extra = {lab.name: _read(groups, p, lab.name, plane, cache) for lab in camp.labels
             if lab.name not in labels and lab.name in g}
    return {**labels, **extra} if extra else labels


def collect(
    camp,
    units: Sequence[str | Path],
    out: str | Path,
    provenance: dict | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Average, validate and stack ``units`` of campaign ``camp`` into the
    dataset group ``out``.

    Every unit is opened before anything is written; a unit of several
    samples (``plane_labels``) contributes one sample per entry.
    """
    sig = camp.signal
    groups = {}
    for p in units:
        groups[str(p)] = open_complete(p, array=sig)
    by_sample: dict[tuple[str, float], list[tuple[str, int | None]]] = defaultdict(list)
    sample_labels: dict[tuple[str, float], dict] = {}
    for p, g in groups.items():
        for lab, plane in unit_samples(g):
            key = (lab["structure"], lab.get("thickness_A", 0.0))
            by_sample[key].append((p, plane))
            sample_labels.setdefault(key, lab)
    keys = sorted(by_sample, key=lambda k: (k[0], k[1]))
    names = sorted({k[0] for k in keys})
    first = groups[str(units[0])]
    shape = tuple(first[sig].shape[-len(camp.signal_dims):])
    n = len(keys)
    checksums = {}
    cache: dict = {}
    name_index = {name: i for i, name in enumerate(names)}
    t0 = time.perf_counter()
    with atomic_group(out) as ds:
        # chunks of whole samples, ~1 MiB (one sample each for large signals),
        # written in order one chunk at a time: nothing held but one chunk
        # named dimensions (zarr v3 dimension_names) and units attributes:
        # the dataset opens in xarray as labelled arrays (xr.open_zarr)
        signal = StackWriter(ds.create_array(
            sig, shape=(n,) + shape, dtype="float32",
            chunks=(min(n, stack_chunk_length(shape)),) + shape, fill_value=0.0,
            compressors=None,  # float32 signals hardly compress
            dimension_names=("sample", *camp.signal_dims),
            attributes={"units": camp.signal_unit, "long_name": camp.title}))
        aux_shapes = {}
        for a in camp.aux_signals:
            if a not in first:
                raise CorruptOutputError(f"{units[0]}: has no {a!r} array (simulated by an "
                                         "older cbedflow?); delete the unit to recompute it")
            aux_shapes[a] = tuple(first[a].shape[-len(camp.aux_signals[a]):]) \
                if camp.aux_signals[a] else ()
        aux = {a: ds.create_array(a, shape=(n,) + shp, dtype="float32",
                                  chunks=(n,) + shp, fill_value=0.0,
                                  dimension_names=("sample", *camp.aux_signals[a]),
                                  attributes={"units": camp.signal_unit})
               for a, shp in aux_shapes.items()}
        aux_values = {a: np.zeros((n,) + shp, np.float32) for a, shp in aux_shapes.items()}
        curves: dict[str, StackWriter] = {}  # labels that are arrays per sample
        dtypes = {lab.name: lab.dtype for lab in camp.labels}
        dtypes[INDEX_LABEL[0]] = INDEX_LABEL[1]
        declared = {lab.name: lab for lab in camp.labels}

        def label_attrs(k: str) -> dict:
            lab = declared.get(k)
            if lab is None:
                return {"long_name": "index of the sample's structure in structure_names"}
            return {"units": lab.unit, "long_name": lab.description,
                    **({"classes": list(lab.classes)} if lab.classes else {})}
        labels: dict[str, np.ndarray] = {}
        for i, key in enumerate(keys):
            parts = sorted(by_sample[key], key=lambda x: (x[0], x[1] or 0))
            weights = np.array([groups[p].attrs.get("num_configs", 1) for p, _ in parts], float)
            acc = np.zeros(shape, dtype=np.float64)
            for (p, plane), w in zip(parts, weights):
                data = _read(groups, p, sig, plane, cache)
                name = p if plane is None else f"{p}[sample {plane}]"
                check_unit(camp, name, data, shape)
                checksums[name] = digest(data)
                acc += data * w
            mean = (acc / weights.sum()).astype(np.float32)
            signal[i] = mean
            for a, shp in aux_shapes.items():
                total = np.zeros(shp, np.float64)
                for (p, plane), w in zip(parts, weights):
                    if a not in groups[p]:
                        raise CorruptOutputError(f"{p}: has no {a!r} array; delete the unit "
                                                 "to recompute it")
                    v = _read(groups, p, a, plane, cache)
                    if v.shape != shp or not np.all(np.isfinite(v)):
                        raise CorruptOutputError(f"{p}: {a} has shape {v.shape} or non-finite "
                                                 f"values; expected finite {shp}")
                    total += v * w
                aux_values[a][i] = total / weights.sum()
            values = camp.sample_labels(_with_arrays(camp, groups, by_sample[key][0],
                                                     sample_labels[key], cache))
            values[INDEX_LABEL[0]] = name_index[key[0]]
            for k, dt in dtypes.items():
                v = np.asarray(values[k], dtype=dt)
                if v.ndim:  # a label that is an array per sample (a curve): streamed
                    if k not in curves:
                        lab = declared.get(k)
                        dims = (lab.dims if lab is not None and len(lab.dims) == v.ndim
                                else tuple(f"{k}_dim{j}" for j in range(v.ndim)))
                        curves[k] = StackWriter(ds.create_array(
                            k, shape=(n,) + v.shape, dtype=dt,
                            chunks=(min(n, stack_chunk_length(v.shape, v.dtype.itemsize)),)
                            + v.shape, dimension_names=("sample", *dims),
                            attributes=label_attrs(k)))
                    curves[k][i] = v
                    continue
                if k not in labels:
                    labels[k] = np.zeros(n, dtype=dt)
                labels[k][i] = v
            if n <= 1000 or (i + 1) % (n // 100) == 0 or i == n - 1:
                progress(f"sample {i + 1}/{n}: {key[0]} t={key[1]:.2f} Å "
                         f"({len(parts)} batches, {time.perf_counter() - t0:.1f} s)")
        signal.close()
        for a, v in aux_values.items():
            aux[a][...] = v
        for w in curves.values():
            w.close()
        for k, v in labels.items():
            arr = ds.create_array(k, shape=v.shape, dtype=v.dtype, chunks=v.shape,
                                  dimension_names=("sample",), attributes=label_attrs(k))
            arr[...] = v
        write_attrs(ds, {
            "dims": ["sample", *camp.signal_dims],
            **({"aux_dims": {a: ["sample", *d] for a, d in camp.aux_signals.items()}}
               if camp.aux_signals else {}),
            "structure_names": names,
            "labels": list(dtypes),
            "classes": {lab.name: list(lab.classes) for lab in camp.labels if lab.classes},
            "units": {lab.name: lab.unit for lab in camp.labels if lab.unit},
            **camp.dataset_attrs(dict(first.attrs)),
            "campaign": camp.name,
            "cbedflow_version": __version__,
            "unit_checksums": {Path(p).as_posix(): c for p, c in sorted(checksums.items())},
            "provenance": provenance or {},
            "versions": package_versions(camp.packages),
            "complete": True,
        })
    progress(f"dataset: {out} ({n} samples, shape {shape})")
    return Path(out)
