"""tf.data input pipelines over example groups (zarr v3), and the input
transforms of the networks (a registry, named by each task).

Runs in the training environment (TensorFlow 2.15, numpy < 2, zarr 3.0.x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _sqrt_standardize(x, axes):
    """sqrt (Poisson-variance stabilising for counts), then per-example
    standardisation."""
    import tensorflow as tf

    return _standardize(tf.sqrt(tf.maximum(x, 0.0)), axes)


def _standardize(x, axes):
    """Per-example standardisation (zero mean, unit variance)."""
    import tensorflow as tf

    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    std = tf.math.reduce_std(x, axis=axes, keepdims=True) + 1e-12
    return (x - mean) / std


def _log10_standardize(x, axes):
    """log10 of intensities spanning decades (floored at 1e-12), then
    per-example standardisation."""
    import tensorflow as tf

    return _standardize(tf.math.log(tf.maximum(x, 1e-12)) / tf.math.log(10.0), axes)


def _identity(x, axes):
    """The input as it is (already scaled, e.g. log10 intensities; see
    ``Task.input_scaling`` for a per-point standardisation)."""
    return x


#: Input transform name -> function(x, axes) (x float32, axes: one example's).
TRANSFORMS = {
    "identity": _identity,
    "sqrt_standardize": _sqrt_standardize,
    "standardize": _standardize,
    "log10_standardize": _log10_standardize,
}


def preprocess(x, transform: str = "sqrt_standardize", ndim: int | None = None,
               input_scaling: dict | None = None):
    """Network input from examples: the task's transform, statistics per
    example, then (``input_scaling``: ``mean`` and ``std`` per input point
    over the training set, :func:`input_scaling`) a per-point
    standardisation, plus a channel axis.

    ``x`` is one example or a stack of them (leading example axis);
    ``ndim``: the dimensions of one example (default 3, a volume).
    """
    import tensorflow as tf

    if transform not in TRANSFORMS:
        raise ValueError(f"input transform {transform!r} is not one of {', '.join(TRANSFORMS)}")
    ndim = 3 if ndim is None else ndim
    x = tf.cast(x, tf.float32)
    x = TRANSFORMS[transform](x, list(range(-ndim, 0)))
    if input_scaling is not None:
        x = ((x - tf.constant(np.asarray(input_scaling["mean"], np.float32)))
             / tf.constant(np.asarray(input_scaling["std"], np.float32)))
    return tf.expand_dims(x, -1)


#: Fewest examples read from zarr per call: a call reads whole stored chunks
#: (many examples each, ``storage.CHUNK_BYTES``) instead of one Python round
#: trip per example.
READ_BLOCK = 64


def read_plan(idx: np.ndarray, chunk: int, min_block: int = READ_BLOCK) -> list[np.ndarray]:
    """Split example indices, in their order, into blocks that each read one
    contiguous range of whole chunks: a block grows while indices increase
    and ends at a chunk boundary once it holds ``min_block`` examples, or
    when the range it reads would exceed ``4 * max(min_block, chunk)``."""
    blocks, cur = [], []
    span = 4 * max(min_block, chunk)
    for i in np.asarray(idx, dtype=np.int64).tolist():
        if cur and (i <= cur[-1] or i - cur[0] >= span
                    or (i // chunk != cur[-1] // chunk and len(cur) >= min_block)):
            blocks.append(np.array(cur, dtype=np.int64))
            cur = []
        cur.append(i)
    if cur:
        blocks.append(np.array(cur, dtype=np.int64))
    return blocks


def raw_chunk_files(path: str | Path, array: str = "x") -> list[str] | None:
    """Chunk files of an example array, if TensorFlow can read them itself.

    The first training epoch reads the examples; through zarr-python inside a
    ``tf.py_function`` it ran at 0.57-0.75x the in-memory rate on 2 cores
    (the reads hold the GIL while TensorFlow preprocesses), through
    ``tf.io.read_file`` + ``tf.io.decode_raw`` at 1.2x. Hand-written because
    no zarr reader runs inside TensorFlow's threads (tensorstore needs a newer
    ml_dtypes than TensorFlow 2.15 allows). It applies only to the plain v3
    layout the crop and augment stages write: float32, chunked along the
    example axis alone, default ``/`` chunk keys and the little-endian
    ``bytes`` codec with no compression or sharding. Returns the file of
    every chunk in order, or None for any other layout (read through zarr).
    """
    import json

    meta_path = Path(path) / array / "zarr.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    shape = meta.get("shape", [])
    grid = meta.get("chunk_grid", {})
    keys = meta.get("chunk_key_encoding", {})
    plain = (
        meta.get("zarr_format") == 3 and meta.get("node_type") == "array"
        and meta.get("data_type") == "float32"
        and grid.get("name") == "regular"
        and grid.get("configuration", {}).get("chunk_shape", [None])[1:] == shape[1:]
        and keys.get("name") == "default"
        and keys.get("configuration", {}).get("separator", "/") == "/"
        and meta.get("codecs") == [{"name": "bytes", "configuration": {"endian": "little"}}]
    )
    if not plain or not shape:
        return None
    chunk = grid["configuration"]["chunk_shape"][0]
    tail = "/".join(["0"] * (len(shape) - 1))
    files = [str(Path(path) / array / "c" / f"{i}/{tail}") for i in range(-(-shape[0] // chunk))]
    return files if all(Path(f).is_file() for f in files) else None


def zarr_dataset(path: str | Path, rank: int = 0, size: int = 1, shuffle: bool = False,
                 seed: int = 0, cache: bool = True, indices=None,
                 thickness_input: bool = False, raw: bool = True,
                 transform: str = "sqrt_standardize", target_scaling: dict | None = None,
                 input_scaling: dict | None = None, aux_scaling: dict | None = None):
    """tf.data pipeline over one rank's shard of an example group.

    Examples ``indices[rank], indices[rank + size], ...`` (all examples when
    ``indices`` is None) are read a block of whole chunks at a time
    (:func:`read_plan`), preprocessed (``transform``) one block per op,
    unbatched, in order, and cached in memory after the first pass when
    ``cache``. Chunks are read inside TensorFlow (:func:`raw_chunk_files`)
    when the layout allows it and ``raw``, else through zarr in a
    ``tf.py_function``. With ``thickness_input`` an element is ``((x, t),
    y)`` with t = thickness / 100 Å. Class labels stay int32; float targets
    (regression) are standardised with ``target_scaling`` (``mean``,
    ``std``, from :func:`target_scaling`) when given; inputs per point with
    ``input_scaling`` (:func:`input_scaling`) after the transform. With
    ``aux_scaling`` (:func:`target_scaling` of ``y_aux``) the target is a
    pair ``(y, y_aux)``, the second head's targets standardised (a task
    with ``aux``).
    """
    import tensorflow as tf
    import zarr

    from ..tasks import THICKNESS_SCALE_A

    g = zarr.open_group(str(path), mode="r")
    x_arr, y_raw = g["x"], g["y"][...]
    if np.issubdtype(y_raw.dtype, np.integer):
        y_all, y_type = y_raw.astype(np.int32), tf.int32
    else:
        y_all, y_type = y_raw.astype(np.float32), tf.float32
        if target_scaling is not None:
            y_all = ((y_all - np.asarray(target_scaling["mean"], np.float32))
                     / np.asarray(target_scaling["std"], np.float32))
    ys = [y_all]
    if aux_scaling is not None:
        ys.append(((g["y_aux"][...].astype(np.float32)
                    - np.asarray(aux_scaling["mean"], np.float32))
                   / np.asarray(aux_scaling["std"], np.float32)))
    t_all = (g["thickness_A"][...] / THICKNESS_SCALE_A).astype(np.float32)
    shape = tuple(x_arr.shape[1:])
    ndim = len(shape)
    if indices is None:
        indices = np.arange(x_arr.shape[0])
    idx = np.asarray(indices, dtype=np.int64)[rank::size]
    chunk = x_arr.chunks[0]
    files = raw_chunk_files(path) if raw and len(idx) else None

    def finish(x, t, *y):
        y = y[0] if len(y) == 1 else tuple(y)
        x = preprocess(x, transform, ndim, input_scaling)
        if thickness_input:
            return (x, t), y
        return x, y

    if files is not None:
        # one block per run of indices inside one chunk; the chunk file is
        # read and decoded by TensorFlow, its rows picked by local index
        blocks = read_plan(idx, chunk, min_block=1)
        which = [int(b[0]) // chunk for b in blocks]
        local = tf.ragged.constant([(b - w * chunk).tolist() for b, w in zip(blocks, which)],
                                   dtype=tf.int64)
        rows = tf.ragged.constant([b.tolist() for b in blocks], dtype=tf.int64)
        t_const = tf.constant(t_all)
        y_consts = [tf.constant(v) for v in ys]

        def read_raw(f, loc, glob):
            x = tf.reshape(tf.io.decode_raw(tf.io.read_file(f), tf.float32), (chunk,) + shape)
            t = tf.expand_dims(tf.gather(t_const, glob), -1)
            return finish(tf.gather(x, loc), t, *(tf.gather(c, glob) for c in y_consts))

        ds = tf.data.Dataset.from_tensor_slices(([files[w] for w in which], local, rows))
        ds = ds.map(read_raw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.unbatch()
    else:
        blocks = read_plan(idx, chunk)

        def read(b):
            sel = blocks[int(b.numpy())]
            lo = int(sel[0]) // chunk * chunk
            hi = min(x_arr.shape[0], (int(sel[-1]) // chunk + 1) * chunk)
            x = x_arr[lo:hi][sel - lo].astype(np.float32)
            return (x, t_all[sel][:, None], *(v[sel] for v in ys))

        def read_prep(b):
            x, t, *y = tf.py_function(read, [b], (tf.float32, tf.float32, y_type)
                                      + (tf.float32,) * (len(ys) - 1))
            x.set_shape((None,) + shape)
            t.set_shape((None, 1))
            for v, arr in zip(y, ys):
                v.set_shape((None,) + arr.shape[1:])
            return finish(x, t, *y)

        # blocks are read and preprocessed concurrently, one op per block, in order
        ds = tf.data.Dataset.range(len(blocks)).map(
            read_prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(1, len(idx)), seed=seed, reshuffle_each_iteration=True)
    return ds, len(idx), shape


def target_scaling(path: str | Path, indices=None, array: str = "y") -> dict | None:
    """Mean and standard deviation of the float targets (``array``: ``y``,
    or ``y_aux`` of a second head) of the examples ``indices`` of ``path``,
    per target (and per point of a curve): the standardisation a regression
    network (head) learns in. None for class labels."""
    import zarr

    y = zarr.open_group(str(path), mode="r")[array][...]
    if np.issubdtype(y.dtype, np.integer):
        return None
    y = y.astype(np.float64) if indices is None else y[np.asarray(indices)].astype(np.float64)
    std = y.std(axis=0)
    return {"mean": y.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def input_scaling(path: str | Path, transform: str, indices=None) -> dict:
    """Mean and standard deviation of every input point of the examples
    ``indices`` of ``path`` after ``transform`` (over the training set: the
    per-point standardisation of ``Task.input_scaling``), read one stored
    chunk at a time."""
    import tensorflow as tf
    import zarr

    x = zarr.open_group(str(path), mode="r")["x"]
    keep = np.zeros(x.shape[0], bool)
    keep[np.arange(x.shape[0]) if indices is None else np.asarray(indices)] = True
    ndim = x.ndim - 1
    s1 = np.zeros(x.shape[1:], np.float64)
    s2 = np.zeros(x.shape[1:], np.float64)
    n = 0
    step = x.chunks[0]
    for i in range(0, x.shape[0], step):
        sel = keep[i:i + step]
        if not sel.any():
            continue
        block = x[i:i + step][sel]
        v = TRANSFORMS[transform](tf.constant(block, tf.float32),
                                  list(range(-ndim, 0))).numpy().astype(np.float64)
        s1 += v.sum(axis=0)
        s2 += (v * v).sum(axis=0)
        n += len(v)
    mean = s1 / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean * mean, 0.0))
    return {"mean": mean.tolist(), "std": np.where(std > 1e-12, std, 1.0).tolist()}
