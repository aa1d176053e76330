"""Crop, split and augment: from the collected dataset to training examples.

One example is the sequence of cropped CBED patterns along one line scan
across the interface: a volume (positions, kx, ky). Line scans at other y
give more examples; tasks with ``average_y`` average the lines instead (the
paper needed this for the step position). Splits are by structure, seeded
and stratified by the task label, so no structure leaks across splits.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import zarr

from .storage import (
    CorruptOutputError,
    StackWriter,
    atomic_group,
    open_complete,
    stack_chunk_length,
    write_attrs,
)
from .tasks import Task

SPLITS = ("train", "validation", "test")

#: Per-example metadata arrays of an example group: name -> dtype.
META = {
    "y": "int32",
    "structure_index": "int32",
    "thickness_A": "float32",
    "line": "int16",
    "step_k": "int8",
    "intermix_fraction": "float32",
}


class ExampleError(ValueError):
    """Bad crop/split/augment input (one line naming the value)."""


def crop_pattern(cbed: np.ndarray, pattern_px: int, binning: int) -> np.ndarray:
    """Central ``pattern_px`` x ``pattern_px`` pixels, summed in ``binning`` blocks.

    Summing (not averaging) keeps intensities as fractions of the probe, so a
    dose in electrons per pattern stays meaningful after binning.
    """
    nkx, nky = cbed.shape[-2:]
    if pattern_px > min(nkx, nky):
        raise ExampleError(f"crop.pattern_px={pattern_px} is larger than the simulated "
                           f"patterns ({nkx} x {nky} pixels); valid: <= {min(nkx, nky)}")
    if pattern_px % binning:
        raise ExampleError(f"crop.pattern_px={pattern_px} is not a multiple of "
                           f"crop.binning={binning}")
    sx, sy = nkx // 2 - pattern_px // 2, nky // 2 - pattern_px // 2
    c = cbed[..., sx:sx + pattern_px, sy:sy + pattern_px]
    if binning > 1:
        n = pattern_px // binning
        c = c.reshape(c.shape[:-2] + (n, binning, n, binning)).sum(axis=(-3, -1))
    return c


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


def _create(group: zarr.Group, n: int, shape: tuple) -> tuple:
    """The example array (chunks of whole examples, ~1 MiB) behind a
    sequential :class:`~cbedflow.storage.StackWriter`, and the metadata."""
    # uncompressed: noisy float32 patterns hardly compress, zstd cost 30% of
    # the first epoch's read rate, and TensorFlow reads plain chunks itself
    # (learn.raw_chunk_files, docs/performance.md)
    x = group.create_array("x", shape=(n,) + shape, dtype="float32",
                           chunks=(min(max(1, n), stack_chunk_length(shape)),) + shape,
                           fill_value=0.0, compressors=None)
    meta = {k: np.zeros(n, dtype=dt) for k, dt in META.items()}
    return StackWriter(x), meta


def iter_chunks(x: zarr.Array):
    """(start, block) over the leading axis of ``x``, one stored chunk at a time."""
    step = x.chunks[0]
    for i in range(0, x.shape[0], step):
        yield i, x[i:i + step]


def _finish(group: zarr.Group, meta: dict, attrs: dict) -> None:
    for k, v in meta.items():
        group.create_array(k, shape=v.shape, dtype=v.dtype, chunks=(max(1, len(v)),))[...] = v
    write_attrs(group, {**attrs, "complete": True})


def crop_and_split(
    dataset: str | Path,
    task: Task,
    out_dir: str | Path,
    pattern_px: int,
    binning: int,
    fractions: dict[str, float],
    seed: int,
    progress: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Write ``{out_dir}/{split}.zarr`` for every split of ``task``."""
    ds = open_complete(dataset)
    n_samples = ds["cbed"].shape[0]
    lab = {k: ds[k][...] for k in ("rough", "step_k", "thickness_A", "intermix_fraction",
                                   "structure_index")}
    if task.label not in ds:
        raise ExampleError(f"{dataset}: has no label array {task.label!r} for task {task.name}")
    y_all = ds[task.label][...]
    keep = np.ones(n_samples, bool)
    if task.only:
        keep &= ds[task.only[0]][...] == task.only[1]
    if not keep.any():
        raise ExampleError(f"{dataset}: no samples for task {task.name}")
    struct_label = {int(s): int(y) for s, y, k in zip(lab["structure_index"], y_all, keep) if k}
    assign = split_structures(struct_label, fractions, seed)
    empty = [s for s in SPLITS if s not in assign.values()]
    if empty:
        raise ExampleError(
            f"task {task.name}: split(s) {', '.join(empty)} would be empty with "
            f"{len(struct_label)} structures; raise structures.per_class or the split fractions")
    ny = ds["cbed"].shape[2]
    lines = 1 if task.average_y else ny
    ang = list(np.asarray(ds.attrs["angular_sampling_mrad"]) * binning)
    outs = {}
    t0 = time.perf_counter()
    for split in SPLITS:
        samples = [i for i in range(n_samples) if keep[i]
                   and assign[int(lab["structure_index"][i])] == split]
        n = len(samples) * lines
        path = Path(out_dir) / f"{split}.zarr"
        with atomic_group(path) as g:
            x = None
            j = 0
            for i in samples:
                c = crop_pattern(ds["cbed"][i], pattern_px, binning)  # (sx, sy, k, k)
                vols = [c.mean(axis=1)] if task.average_y else [c[:, iy] for iy in range(ny)]
                for iy, v in enumerate(vols):
                    if x is None:
                        x, meta = _create(g, n, v.shape)
                    x[j] = v.astype(np.float32)
                    meta["y"][j] = y_all[i]
                    meta["structure_index"][j] = lab["structure_index"][i]
                    meta["thickness_A"][j] = lab["thickness_A"][i]
                    meta["line"][j] = -1 if task.average_y else iy
                    meta["step_k"][j] = lab["step_k"][i]
                    meta["intermix_fraction"][j] = lab["intermix_fraction"][i]
                    j += 1
            x.close()
            _finish(g, meta, {
                "task": task.name, "split": split, "classes": list(task.classes),
                "dims": ["example", "scan_x", "kx", "ky"],
                "angular_sampling_mrad": ang,
                "scan_step_A": ds.attrs["scan_step_A"],
                "crop": {"pattern_px": pattern_px, "binning": binning},
                "structure_names": ds.attrs["structure_names"],
                "source": str(dataset),
            })
        progress(f"{task.name}/{split}: {n} examples from {len(samples)} samples "
                 f"({time.perf_counter() - t0:.1f} s)")
        outs[split] = path
    return outs


def augment(
    train: str | Path,
    out: str | Path,
    copies: int,
    dose_range: tuple[float, float],
    max_rotation_deg: float,
    seed: int,
    keep_original: bool = True,
    progress: Callable[[str], None] = print,
) -> Path:
    """Write an augmented copy of the training split.

    Every example gets ``copies`` versions (the first the original if
    ``keep_original``), each rotated by one angle drawn uniformly from
    +-``max_rotation_deg`` (all patterns of the volume alike) and with Poisson
    noise at a dose drawn log-uniformly from ``dose_range`` [electrons per
    pattern]. Draws are seeded per (example, copy), so the result does not
    depend on processing order.
    """
    from scipy.ndimage import rotate

    src = open_complete(train, array="x")
    n = src["x"].shape[0]
    key = zlib.crc32(str(src.attrs["task"]).encode())
    lo, hi = np.log(dose_range[0]), np.log(dose_range[1])
    t0 = time.perf_counter()
    with atomic_group(out) as g:
        x, meta = _create(g, n * copies, src["x"].shape[1:])
        dose = np.zeros(n * copies, np.float32)
        angle = np.zeros(n * copies, np.float32)
        src_meta = {k: src[k][...] for k in META}
        vols = ((i0 + k, v) for i0, block in iter_chunks(src["x"]) for k, v in enumerate(block))
        for i, vol in vols:
            vol = vol.astype(np.float64)
            for c in range(copies):
                j = i * copies + c
                for k in META:
                    meta[k][j] = src_meta[k][i]
                if keep_original and c == 0:
                    x[j] = vol.astype(np.float32)
                    dose[j], angle[j] = np.inf, 0.0
                    continue
                rng = np.random.default_rng([seed, key, i, c])
                a = rng.uniform(-max_rotation_deg, max_rotation_deg)
                d = float(np.exp(rng.uniform(lo, hi)))
                v = rotate(vol, a, axes=(-2, -1), reshape=False, order=1, mode="constant")
                v = rng.poisson(np.clip(v, 0, None) * d) / d
                x[j] = v.astype(np.float32)
                dose[j], angle[j] = d, a
            if (i + 1) % max(1, n // 10) == 0 or i == n - 1:
                progress(f"augment {i + 1}/{n} examples ({time.perf_counter() - t0:.1f} s)")
        x.close()
        meta_extra = {"dose_e_per_pattern": dose, "rotation_deg": angle}
        for k, v in meta_extra.items():
            g.create_array(k, shape=v.shape, dtype=v.dtype, chunks=(max(1, len(v)),))[...] = v
        attrs = dict(src.attrs)
        attrs.update(split="train_augmented", copies=copies, dose_range=list(dose_range),
                     max_rotation_deg=max_rotation_deg, source=str(train))
        _finish(g, meta, attrs)
    return Path(out)


def check_examples(path: str | Path, n_classes: int | None = None) -> zarr.Group:
    """Open an example group and refuse missing, misshapen or non-finite data.

    Raises :class:`CorruptOutputError` naming ``path`` and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise CorruptOutputError(f"{path}: split is missing")
    g = open_complete(path, array="x")
    x = g["x"]
    if x.ndim != 4:
        raise CorruptOutputError(f"{path}: x has shape {x.shape}; expected "
                                 "(examples, positions, kx, ky)")
    if x.shape[0] == 0:
        raise CorruptOutputError(f"{path}: split holds no examples")
    for i0, block in iter_chunks(x):
        bad = ~np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if bad.any():
            raise CorruptOutputError(f"{path}: example {i0 + int(np.argmax(bad))} holds "
                                     "non-finite values")
    y = g["y"][...]
    if n_classes is not None and (y.min() < 0 or y.max() >= n_classes):
        raise CorruptOutputError(f"{path}: labels span {y.min()}..{y.max()}, "
                                 f"valid 0..{n_classes - 1}")
    return g
