"""Examples, splits and augmentation: from the collected dataset to training
examples.

The campaign cuts each sample's signal into examples
(``Campaign.cut_examples``: e.g. one line scan, one image patch, one set of
curves) and augments them (``Campaign.augment_example``); this module does
the rest for every campaign. Splits are by sample (structure), seeded and
stratified by the task label (a regression task is one class), so no sample
leaks across splits.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import zarr

from .storage import (
    ChunkReader,
    CorruptOutputError,
    StackWriter,
    atomic_group,
    open_complete,
    stack_chunk_length,
    write_attrs,
)
from .tasks import Task

SPLITS = ("train", "validation", "test")

#: Per-example metadata of every example group (name -> dtype), before the
#: campaign's ``example_meta``; ``y`` is int32 (a class) or float32 (targets).
CORE_META = {
    "structure_index": "int32",
    "thickness_A": "float32",
}


class ExampleError(ValueError):
    """Bad crop/split/augment input (one line naming the value)."""


def meta_dtypes(camp) -> dict[str, str]:
    """Per-example metadata arrays of an example group (besides ``y``)."""
    return {**CORE_META, **camp.example_meta}


def split_counts(n: int, fractions: dict[str, float]) -> tuple[int, int, int]:
    """(test, validation, train) structures of one class of ``n`` structures:
    the fractions rounded half up, at least one training structure kept."""
    n_test = int(np.floor(n * fractions["test"] + 0.5))
    n_val = int(np.floor(n * fractions["validation"] + 0.5))
    if n_test + n_val >= n:  # keep at least one training structure
        n_val = max(0, n - 1 - n_test)
    return n_test, n_val, n - n_test - n_val


def split_structures(labels: dict[int, int], fractions: dict[str, float], seed: int
                     ) -> dict[int, str]:
    """Assign every structure to a split, stratified by its label.

    Parameters
    ----------
    labels : dict
        structure index -> task label.
    fractions : dict
        ``validation`` and ``test`` fractions; the rest is training.
    seed : int
        Seed of the shuffle.
    """
    rng = np.random.default_rng([seed, 7])
    out: dict[int, str] = {}
    for lab in sorted(set(labels.values())):
        members = sorted(s for s, v in labels.items() if v == lab)
        members = [members[i] for i in rng.permutation(len(members))]
        n_test, n_val, _ = split_counts(len(members), fractions)
        for i, s in enumerate(members):
            out[s] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return out


def _create(group: zarr.Group, n: int, shape: tuple, meta_dt: dict, y_shape: tuple = (),
            y_dtype: str = "int32", aux_shape: tuple | None = None) -> tuple:
    """The example array (chunks of whole examples, ~1 MiB) behind a
    sequential :class:`~cbedflow.storage.StackWriter`, and the metadata
    (with ``aux_shape``: also the second head's float32 targets ``y_aux``)."""
    # uncompressed: noisy float32 signals hardly compress, zstd cost 30% of
    # the first epoch's read rate, and TensorFlow reads plain chunks itself
    # (learn.raw_chunk_files, docs/performance.md)
    x = group.create_array("x", shape=(n,) + shape, dtype="float32",
                           chunks=(min(max(1, n), stack_chunk_length(shape)),) + shape,
                           fill_value=0.0, compressors=None)
    meta = {"y": np.zeros((n,) + tuple(y_shape), dtype=y_dtype)}
    if aux_shape is not None:
        meta["y_aux"] = np.zeros((n,) + tuple(aux_shape), np.float32)
    meta.update({k: np.zeros(n, dtype=dt) for k, dt in meta_dt.items()})
    return StackWriter(x), meta


def iter_chunks(x: zarr.Array):
    """(start, block) over the leading axis of ``x``, one stored chunk at a time."""
    step = x.chunks[0]
    for i in range(0, x.shape[0], step):
        yield i, x[i:i + step]


def _finish(group: zarr.Group, meta: dict, attrs: dict) -> None:
    for k, v in meta.items():
        group.create_array(k, shape=v.shape, dtype=v.dtype,
                           chunks=(max(1, len(v)),) + v.shape[1:])[...] = v
    write_attrs(group, {**attrs, "complete": True})


def task_targets(ds, task: Task, n_samples: int) -> np.ndarray:
    """y of every sample: the class index (classification), the targets
    stacked on a last axis (regression on scalar labels) or the one label's
    per-sample array (a curve-to-curve task)."""
    arrays = [ds[name][...] for name in task.labels]
    if not task.is_regression:
        return arrays[0]
    if len(arrays) == 1 and arrays[0].ndim > 1:
        return arrays[0].astype(np.float32)
    return np.stack(arrays, axis=-1).astype(np.float32).reshape(n_samples, -1)


def aux_targets(ds, task: Task, dataset) -> np.ndarray | None:
    """The second head's targets of every sample (samples, len(task.aux)),
    float32, or None for a task with one head."""
    if not task.aux:
        return None
    missing = [name for name in task.aux if name not in ds]
    if missing:
        raise ExampleError(f"{dataset}: has no label array {missing[0]!r} for the second "
                           f"head (aux) of task {task.name}")
    return np.stack([ds[name][...] for name in task.aux], axis=-1).astype(np.float32)


def examples_for_task(
    camp,
    dataset: str | Path,
    task: Task,
    out_dir: str | Path,
    config: dict,
    progress: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Write ``{out_dir}/{split}.zarr`` for every split of ``task``: the
    campaign's examples of every sample, split by sample. ``config``: the
    validated config (``seed``, ``split`` and the campaign's sections)."""
    ds = open_complete(dataset, array=camp.signal)
    sig = ChunkReader(ds[camp.signal])  # samples are read in order within a split
    n_samples = ds[camp.signal].shape[0]
    missing = [name for name in task.labels if name not in ds]
    if missing:
        raise ExampleError(f"{dataset}: has no label array {missing[0]!r} for task {task.name}")
    meta_dt = meta_dtypes(camp)
    lab = {k: ds[k][...] for k in meta_dt if k in ds}
    if "thickness_A" not in lab:
        lab["thickness_A"] = np.full(n_samples, np.nan, np.float32)
    y_all = task_targets(ds, task, n_samples)
    aux_all = aux_targets(ds, task, dataset)
    keep = np.ones(n_samples, bool)
    if task.only:
        keep &= ds[task.only[0]][...] == task.only[1]
    for label, values in task.exclude:
        keep &= ~np.isin(ds[label][...], values)
    if not keep.any():
        raise ExampleError(f"{dataset}: no samples for task {task.name}")
    struct_label = {int(s): (0 if task.is_regression else int(y))
                    for s, y, k in zip(lab["structure_index"], y_all, keep) if k}
    assign = split_structures(struct_label, config["split"], config["seed"])
    empty = [s for s in SPLITS if s not in assign.values()]
    if empty:
        raise ExampleError(
            f"task {task.name}: split(s) {', '.join(empty)} would be empty with "
            f"{len(struct_label)} samples; add samples or raise the split fractions")
    y_dtype = "float32" if task.is_regression else "int32"
    in_split = {sp: [i for i in range(n_samples) if keep[i]
                     and assign[int(lab["structure_index"][i])] == sp] for sp in SPLITS}
    if task.train_only:  # the test split keeps the others (generalisation)
        name, value = task.train_only
        only = ds[name][...] == value
        for sp in ("train", "validation"):
            in_split[sp] = [i for i in in_split[sp] if only[i]]
            if not in_split[sp]:
                raise ExampleError(f"task {task.name}: no {sp} samples with {name} == {value}")
    reference = camp.example_reference(ds, np.asarray(in_split["train"], int), config, task)
    aux_arrays = {name: ds[name] for name in camp.aux_signals if name in ds}
    attrs = {**camp.example_attrs(dict(ds.attrs), config, task), **reference}
    if task.is_regression:
        attrs["targets"] = list(task.target_names)
        attrs["units"] = list(task.units)
    outs = {}
    t0 = time.perf_counter()
    for split in SPLITS:
        samples = in_split[split]

        def cut(i: int) -> list:
            aux = {name: a[i] for name, a in aux_arrays.items()}
            return camp.cut_examples(sig[i], task, config, sample=i, split=split, aux=aux,
                                     reference=reference, target=y_all[i])

        # every sample gives as many examples as the first (checked): the
        # array is created once, and examples are cut one sample at a time
        first = cut(samples[0]) if samples else []
        # a campaign's metadata label that this dataset lacks (e.g. one only
        # some configs produce) and that cut_examples does not give is left out
        meta_dt = {k: dt for k, dt in meta_dtypes(camp).items()
                   if k in lab or (first and k in first[0][1])}
        per_sample = len(first)
        n = per_sample * len(samples)
        path = Path(out_dir) / f"{split}.zarr"
        with atomic_group(path) as g:
            x = None
            j = 0
            for i in samples:
                examples = first if i == samples[0] else cut(i)
                if len(examples) != per_sample:
                    raise ExampleError(f"{dataset}: sample {i} gives {len(examples)} examples, "
                                       f"the others {per_sample}")
                for v, extra in examples:
                    # an example may carry its own target (a field label's value
                    # at the example's place); else it is the sample's
                    y = np.asarray(extra["y"]) if "y" in extra else y_all[i]
                    if x is None:
                        x, meta = _create(g, n, v.shape, meta_dt, np.shape(y), y_dtype,
                                          None if aux_all is None else aux_all.shape[1:])
                    x[j] = v.astype(np.float32)
                    meta["y"][j] = y
                    if aux_all is not None:
                        meta["y_aux"][j] = aux_all[i]
                    for k in meta_dt:
                        meta[k][j] = extra[k] if k in extra else lab[k][i]
                    j += 1
            x.close()
            _finish(g, meta, {
                "task": task.name, "split": split, "classes": list(task.classes),
                **attrs,
                **({"aux": list(task.aux), "aux_units": list(task.aux_units)}
                   if task.aux else {}),
                "structure_names": ds.attrs["structure_names"],
                "source": str(dataset),
            })
        progress(f"{task.name}/{split}: {n} examples from {len(samples)} samples "
                 f"({time.perf_counter() - t0:.1f} s)")
        outs[split] = path
    return outs


def augment(
    camp,
    train: str | Path,
    out: str | Path,
    config: dict,
    progress: Callable[[str], None] = print,
    noisy_test: bool = False,
) -> Path:
    """Write an augmented copy of the training split.

    Every example gets ``augment.copies`` versions (the first the original if
    ``augment.keep_original``), each made by the campaign's
    ``augment_example``. Draws are seeded per (example, copy), so the result
    does not depend on processing order.

    With ``noisy_test`` the input is the test split and every example gets
    exactly one augmented version, from draws of their own (another seed
    stream than the training copies): the held-out set under the same
    measurement conditions the network was trained for
    (``evaluate.noisy_test``).
    """
    a = config["augment"]
    copies, keep_original, seed = a["copies"], a["keep_original"], config["seed"]
    if noisy_test:
        copies, keep_original = 1, False
    src = open_complete(train, array="x")
    n = src["x"].shape[0]
    key = zlib.crc32((str(src.attrs["task"]) + ("/test_noisy" if noisy_test else "")).encode())
    meta_dt = {k: dt for k, dt in meta_dtypes(camp).items() if k in src}
    t0 = time.perf_counter()
    with atomic_group(out) as g:
        y_src = src["y"][...]
        x, meta = _create(g, n * copies, src["x"].shape[1:], meta_dt, y_src.shape[1:],
                          str(y_src.dtype), src["y_aux"].shape[1:] if "y_aux" in src else None)
        extra = {k: np.zeros(n * copies, dt) for k, (dt, _) in camp.augment_meta.items()}
        carried = ("y", "y_aux") if "y_aux" in src else ("y",)  # y_aux: a second head's
        src_meta = {k: src[k][...] for k in (*carried, *meta_dt)}
        vols = ((i0 + k, v) for i0, block in iter_chunks(src["x"]) for k, v in enumerate(block))
        for i, vol in vols:
            vol = vol.astype(np.float64)
            for c in range(copies):
                j = i * copies + c
                for k in src_meta:
                    meta[k][j] = src_meta[k][i]
                if keep_original and c == 0:
                    x[j] = vol.astype(np.float32)
                    for k, (_, same) in camp.augment_meta.items():
                        extra[k][j] = same
                    continue
                rng = np.random.default_rng([seed, key, i, c])
                v, drawn = camp.augment_example(vol, rng, config)
                x[j] = v.astype(np.float32)
                for k, value in drawn.items():
                    extra[k][j] = value
            if (i + 1) % max(1, n // 10) == 0 or i == n - 1:
                progress(f"augment {i + 1}/{n} examples ({time.perf_counter() - t0:.1f} s)")
        x.close()
        for k, v in extra.items():
            g.create_array(k, shape=v.shape, dtype=v.dtype, chunks=(max(1, len(v)),))[...] = v
        attrs = dict(src.attrs)
        attrs.update(split="test_noisy" if noisy_test else "train_augmented", copies=copies,
                     **camp.augment_attrs(config),
                     augmented_from=str(train))  # source: the dataset, as the split
        _finish(g, meta, attrs)
    return Path(out)


def check_examples(path: str | Path, n_classes: int | None = None,
                   ndim: int | None = None) -> zarr.Group:
    """Open an example group and refuse missing, misshapen or non-finite data
    (``n_classes``: class labels must lie in 0..n_classes-1, None: float
    targets; ``ndim``: the dimensions of one example a network takes).

    Raises :class:`CorruptOutputError` naming ``path`` and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise CorruptOutputError(f"{path}: split is missing")
    g = open_complete(path, array="x")
    x = g["x"]
    dims = list(g.attrs.get("dims") or [])
    if dims and x.ndim != len(dims):
        raise CorruptOutputError(f"{path}: x has shape {x.shape}; expected ({', '.join(dims)})")
    if ndim is not None and x.ndim != ndim + 1:
        raise CorruptOutputError(f"{path}: x has shape {x.shape}; the network takes examples "
                                 f"of {ndim} dimensions (examples, {ndim} axes)")
    if x.shape[0] == 0:
        raise CorruptOutputError(f"{path}: split holds no examples")
    for i0, block in iter_chunks(x):
        bad = ~np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if bad.any():
            raise CorruptOutputError(f"{path}: example {i0 + int(np.argmax(bad))} holds "
                                     "non-finite values")
    y = g["y"][...]
    if n_classes is None:
        if not np.all(np.isfinite(y)):
            raise CorruptOutputError(f"{path}: targets y hold non-finite values")
    elif y.min() < 0 or y.max() >= n_classes:
        raise CorruptOutputError(f"{path}: labels span {y.min()}..{y.max()}, "
                                 f"valid 0..{n_classes - 1}")
    if "y_aux" in g and not np.all(np.isfinite(g["y_aux"][...])):
        raise CorruptOutputError(f"{path}: second-head targets y_aux hold non-finite values")
    return g
