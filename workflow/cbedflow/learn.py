"""Data-parallel training and evaluation of the paper's 3D-CNN.

Runs in the training environment (TensorFlow 2.15 + Horovod 0.28.1, numpy <
2, zarr 3.0.x). Launch training under ``horovodrun``/``mpirun``/``jsrun``/
``srun``; every process is one rank. The backend (Horovod) lives in
:mod:`cbedflow.distributed` alone; this module only calls its members:

* each rank reads its own shard of the (augmented) training set from zarr
  through ``tf.data``;
* initial variables are broadcast from rank 0, gradients averaged by the
  backend's optimizer wrapper, epoch metrics averaged across ranks;
* the learning rate is scaled by the configured rule (``linear``: lr x size,
  ``sqrt``: lr x sqrt(size), ``none``);
* rank 0 alone writes checkpoints, the CSV log and TensorBoard; a rerun
  resumes from the last checkpoint and continues the epoch count.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .site import scheduler_job_id
from .storage import digest, write_json


def preprocess(x):
    """Network input from CBED intensities: sqrt (Poisson variance
    stabilising), then per-example standardisation, plus a channel axis.

    ``x`` is one example (positions, kx, ky) or a stack of them (leading
    example axis); statistics are per example either way.
    """
    import tensorflow as tf

    x = tf.sqrt(tf.maximum(tf.cast(x, tf.float32), 0.0))
    axes = [-3, -2, -1]
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    std = tf.math.reduce_std(x, axis=axes, keepdims=True) + 1e-12
    return tf.expand_dims((x - mean) / std, -1)


def build_model(input_shape: tuple[int, int, int], n_classes: int, conv_filters=(8, 16, 16),
                kernel_size: int = 3, dense_units: int = 64, dropout: float = 0.15,
                pool_size: int = 2, thickness_input: bool = False):
    """The paper's network (Oxley et al., Fig. 3a).

    Conv3D layers without max pooling, one average pooling, two dense layers
    (the second is the softmax output), dropout after every layer.
    Input: (scan positions, kx, ky, 1); with ``thickness_input`` a second
    input, thickness / 100 Å, joins the flattened features before the dense
    layer.
    """
    import tensorflow as tf
    from tensorflow.keras import layers

    inp = layers.Input(shape=tuple(input_shape) + (1,), name="cbed_sequence")
    h = inp
    for i, f in enumerate(conv_filters):
        h = layers.Conv3D(f, kernel_size, padding="same", activation="relu", name=f"conv{i}")(h)
        h = layers.Dropout(dropout, name=f"dropout_conv{i}")(h)
    pool = tuple(min(pool_size, s) for s in input_shape)
    h = layers.AveragePooling3D(pool_size=pool, name="average_pool")(h)
    h = layers.Flatten(name="flatten")(h)
    inputs = [inp]
    if thickness_input:
        t = layers.Input(shape=(1,), name="thickness")
        inputs.append(t)
        h = layers.Concatenate(name="with_thickness")([h, t])
    h = layers.Dense(dense_units, activation="relu", name="dense")(h)
    h = layers.Dropout(dropout, name="dropout_dense")(h)
    out = layers.Dense(n_classes, activation="softmax", name="softmax")(h)
    return tf.keras.Model(inputs if thickness_input else inp, out, name="cbed3dcnn")


def model_from_params(params: dict, shape):
    """:func:`build_model` with the config's train section (+ model spec)."""
    return build_model(shape, int(params["n_classes"]), tuple(params["conv_filters"]),
                       params["kernel_size"], params["dense_units"], params["dropout"],
                       params["pool_size"],
                       bool(params.get("model", {}).get("thickness_input", False)))


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
                 thickness_input: bool = False, raw: bool = True):
    """tf.data pipeline over one rank's shard of an example group.

    Examples ``indices[rank], indices[rank + size], ...`` (all examples when
    ``indices`` is None) are read a block of whole chunks at a time
    (:func:`read_plan`), preprocessed one block per op, unbatched, in order,
    and cached in memory after the first pass when ``cache``. Chunks are read
    inside TensorFlow (:func:`raw_chunk_files`) when the layout allows it and
    ``raw``, else through zarr in a ``tf.py_function``. With
    ``thickness_input`` an element is ``((x, t), y)`` with t = thickness /
    100 Å.
    """
    import tensorflow as tf
    import zarr

    from .tasks import THICKNESS_SCALE_A

    g = zarr.open_group(str(path), mode="r")
    x_arr, y_all = g["x"], g["y"][...].astype(np.int32)
    t_all = (g["thickness_A"][...] / THICKNESS_SCALE_A).astype(np.float32)
    shape = tuple(x_arr.shape[1:])
    if indices is None:
        indices = np.arange(x_arr.shape[0])
    idx = np.asarray(indices, dtype=np.int64)[rank::size]
    chunk = x_arr.chunks[0]
    files = raw_chunk_files(path) if raw and len(idx) else None

    def finish(x, t, y):
        if thickness_input:
            return (preprocess(x), t), y
        return preprocess(x), y

    if files is not None:
        # one block per run of indices inside one chunk; the chunk file is
        # read and decoded by TensorFlow, its rows picked by local index
        blocks = read_plan(idx, chunk, min_block=1)
        which = [int(b[0]) // chunk for b in blocks]
        local = tf.ragged.constant([(b - w * chunk).tolist() for b, w in zip(blocks, which)],
                                   dtype=tf.int64)
        ts = tf.ragged.constant([t_all[b].tolist() for b in blocks], dtype=tf.float32)
        ys = tf.ragged.constant([y_all[b].tolist() for b in blocks], dtype=tf.int32)

        def read_raw(f, rows, t, y):
            x = tf.reshape(tf.io.decode_raw(tf.io.read_file(f), tf.float32), (chunk,) + shape)
            return finish(tf.gather(x, rows), tf.expand_dims(t, -1), y)

        ds = tf.data.Dataset.from_tensor_slices(([files[w] for w in which], local, ts, ys))
        ds = ds.map(read_raw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.unbatch()
    else:
        blocks = read_plan(idx, chunk)

        def read(b):
            sel = blocks[int(b.numpy())]
            lo = int(sel[0]) // chunk * chunk
            hi = min(x_arr.shape[0], (int(sel[-1]) // chunk + 1) * chunk)
            x = x_arr[lo:hi][sel - lo].astype(np.float32)
            return x, t_all[sel][:, None], y_all[sel]

        def read_prep(b):
            x, t, y = tf.py_function(read, [b], (tf.float32, tf.float32, tf.int32))
            x.set_shape((None,) + shape)
            t.set_shape((None, 1))
            y.set_shape((None,))
            return finish(x, t, y)

        # blocks are read and preprocessed concurrently, one op per block, in order
        ds = tf.data.Dataset.range(len(blocks)).map(
            read_prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(1, len(idx)), seed=seed, reshuffle_each_iteration=True)
    return ds, len(idx), shape


def lr_scale(rule: str, size: int) -> float:
    """Learning-rate multiplier for ``size`` ranks."""
    if rule == "linear":
        return float(size)
    if rule == "sqrt":
        return math.sqrt(size)
    if rule == "none":
        return 1.0
    raise ValueError(f"train.lr_scaling={rule!r} is not one of linear, sqrt, none")


def resume_key(params: dict, train_path: str, val_path: str, size: int) -> str:
    """Identity of a training run: a checkpoint is resumed only by the same
    settings, rank count and input data (zarr.json size and mtime)."""
    ident = [json.dumps(params, sort_keys=True), size]
    for p in (train_path, val_path):
        st = (Path(p) / "zarr.json").stat()
        ident.append((st.st_size, st.st_mtime_ns))
    return digest(json.dumps(ident))


def truncate_history(path: Path, epochs: int) -> None:
    """Keep the rows of epochs < ``epochs`` in a CSV history (atomically): a run
    killed after logging an epoch but before checkpointing it repeats that epoch."""
    if not path.exists():
        return
    with open(path) as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    from .storage import atomic_file

    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs]
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)


#: exit status of a run that stopped early for its walltime (checkpoint saved);
#: EX_TEMPFAIL, so the scheduler or Snakemake retries and the rerun resumes
WALLTIME_EXIT = 75


def walltime_deadline(walltime_s: float | None, margin_s: float, start: float) -> float | None:
    """Epoch-end deadline [s since the epoch]: stop when the next epoch might not
    fit. ``walltime_s`` comes from ``--walltime-s`` (the rule's runtime
    resource) or ``CBEDFLOW_WALLTIME_S``."""
    if walltime_s is None:
        env = os.environ.get("CBEDFLOW_WALLTIME_S")
        walltime_s = float(env) if env else None
    if not walltime_s:
        return None
    return start + float(walltime_s) - float(margin_s)


def train(params: dict, train_path: str, val_path: str, out_dir: str,
          walltime_s: float | None = None, margin_s: float = 60.0,
          expected_ranks: int | None = None) -> int:
    """Train under Horovod; returns 0, or :data:`WALLTIME_EXIT` after a clean
    stop before the walltime. ``params``: the config's train section plus
    ``task``, ``n_classes`` and ``seed``; ``expected_ranks``: the ranks the
    launcher started (another world size is refused before any work)."""
    t_start = time.time()
    import tensorflow as tf

    from .examples import check_examples
    from .storage import atomic_file

    n_classes = int(params["n_classes"])
    # bad input stops every rank before anything starts
    check_examples(train_path, n_classes)
    check_examples(val_path, n_classes)
    from .distributed import init as init_distributed

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    backend = init_distributed(expected_ranks, out_dir)
    rank, size = backend.rank, backend.size
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    tf.keras.utils.set_random_seed(int(params["seed"]) + rank)
    batch = int(params["batch_size"])
    tin = bool(params.get("model", {}).get("thickness_input", False))
    tr, n_tr, shape = zarr_dataset(train_path, rank, size, shuffle=True,
                                   seed=int(params["seed"]) + rank, cache=params["cache"],
                                   indices=model_indices(train_path, params),
                                   thickness_input=tin)
    va, n_va, vshape = zarr_dataset(val_path, rank, size, cache=params["cache"],
                                    indices=model_indices(val_path, params),
                                    thickness_input=tin)
    if vshape != shape:
        raise ValueError(f"{val_path}: example shape {vshape} differs from training {shape}")
    # every rank must take the same number of steps or the allreduce hangs
    n_tr_max = backend.max_int(n_tr)
    steps = max(1, int(math.ceil(n_tr_max / batch)))
    n_va_max = backend.max_int(n_va)
    val_steps = max(1, int(math.ceil(n_va_max / batch)))
    tr = tr.repeat().batch(batch).prefetch(tf.data.AUTOTUNE)
    va = va.repeat().batch(batch).prefetch(tf.data.AUTOTUNE)

    model = model_from_params(params, shape)
    lr = params["learning_rate"] * lr_scale(params["lr_scaling"], size)
    opt = backend.optimizer(
        tf.keras.optimizers.legacy.SGD(learning_rate=lr, momentum=params["momentum"]))
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    state_path = ckpt_dir / "state.json"
    weights_path = ckpt_dir / "last.weights.h5"
    key = resume_key(params, train_path, val_path, size)
    initial_epoch = 0
    if state_path.exists() and weights_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("key") == key:
            model.load_weights(str(weights_path))
            initial_epoch = int(state["epoch"])
            print(f"rank {rank}/{size}: resuming from {weights_path} at epoch {initial_epoch}",
                  flush=True)
        elif rank == 0:
            print(f"checkpoint {weights_path} is from other settings or data; starting afresh",
                  flush=True)
    epochs = int(params["epochs"])

    class RankLog(tf.keras.callbacks.Callback):
        """Every rank reports its steps, so a log shows all ranks trained."""

        def on_epoch_begin(self, epoch, logs=None):
            self.batches, self.t0 = 0, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            print(f"hvd rank={rank} size={size} epoch={epoch + 1}/{epochs} "
                  f"batches={self.batches} loss={logs.get('loss', float('nan')):.4f} "
                  f"accuracy={logs.get('accuracy', float('nan')):.4f} "
                  f"val_accuracy={logs.get('val_accuracy', float('nan')):.4f} "
                  f"({time.perf_counter() - self.t0:.1f} s)", flush=True)

    best_path = ckpt_dir / "best.weights.h5"
    best = {"val_loss": float("inf"), "epoch": None}
    if initial_epoch and state_path.exists():
        best.update(json.loads(state_path.read_text()).get("best", {}))

    class Checkpoint(tf.keras.callbacks.Callback):
        """Rank 0: weights + epoch (and the best weights by validation loss,
        averaged over ranks), written atomically after every epoch."""

        def _save(self, path):
            with atomic_file(path) as tmp:
                self.model.save_weights(str(tmp))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            vl = float(logs.get("val_loss", float("inf")))
            if vl < best["val_loss"]:
                best.update(val_loss=vl, epoch=epoch + 1,
                            val_accuracy=float(logs.get("val_accuracy", float("nan"))))
                self._save(best_path)
            self._save(weights_path)
            write_json(state_path, {"epoch": epoch + 1, "key": key, "best": best, "logs": {
                k: float(v) for k, v in logs.items()}})

    deadline = walltime_deadline(walltime_s, margin_s, t_start)
    stopped = {"early": False}

    class Walltime(tf.keras.callbacks.Callback):
        """Stop after an epoch (its checkpoint written) when the next epoch,
        as long as the slowest so far, would pass the deadline. Rank 0
        decides and broadcasts, so every rank stops at the same epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.longest = max(getattr(self, "longest", 0.0), time.time() - self.t0)
            late = float(time.time() + self.longest > deadline) if rank == 0 else 0.0
            late = backend.broadcast_float(late, 0)
            if late and epoch + 1 < epochs:
                stopped["early"] = True
                self.model.stop_training = True

    callbacks = [
        *backend.callbacks(),
        RankLog(),
    ]
    if rank == 0:
        if initial_epoch > 0:
            truncate_history(out / "history.csv", initial_epoch)
        callbacks += [
            tf.keras.callbacks.CSVLogger(str(out / "history.csv"), append=initial_epoch > 0),
            tf.keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard"),
                                           write_graph=False, profile_batch=0),
            Checkpoint(),
        ]
    if deadline is not None:
        callbacks.append(Walltime())  # after Checkpoint: the epoch is saved first
    if rank == 0:
        print(f"training {params['task']}/{params.get('model', {}).get('id', 'all')}: {size} ranks, {n_tr} examples/rank, "
              f"{steps} steps/epoch, batch {batch}/rank, lr {lr:g} "
              f"({params['lr_scaling']} scaling), epochs {initial_epoch}->{epochs}", flush=True)
    if initial_epoch < epochs:
        model.fit(tr, steps_per_epoch=steps, epochs=epochs, initial_epoch=initial_epoch,
                  validation_data=va, validation_steps=val_steps, callbacks=callbacks,
                  verbose=0)
    if stopped["early"]:
        if rank == 0:
            state = json.loads(state_path.read_text())
            print(f"walltime: stopped cleanly after epoch {state['epoch']}/{epochs} "
                  f"(checkpoint {weights_path}); rerun to resume", flush=True)
        return WALLTIME_EXIT
    if rank == 0:
        final = out / "model.keras"
        # a fresh, uncompiled copy: the Horovod optimizer is not serialisable
        clean = model_from_params(params, shape)
        clean.set_weights(model.get_weights())
        if params.get("keep_best", True) and best_path.exists():
            clean.load_weights(str(best_path))
            print(f"final model: best validation loss {best['val_loss']:.4f} at epoch "
                  f"{best['epoch']}", flush=True)
        with atomic_file(final) as tmp:
            clean.save(str(tmp))
        write_model_manifest(out / "manifest.json", params, train_path, shape, size)
        write_json(out / "train_info.json", {
            "task": params["task"], "ranks": size, "epochs": epochs, "learning_rate": lr,
            "examples_per_rank": n_tr, "input_shape": list(shape), "n_classes": n_classes,
            "best": best if params.get("keep_best", True) else None,
            "scheduler_job": scheduler_job_id(),
        })
        print(f"model written to {final}", flush=True)
    return 0


def model_indices(path: str | Path, params: dict) -> np.ndarray:
    """Examples of ``path`` that the model of ``params`` (``model`` spec,
    ``nominal_thicknesses_A``) trains or is tested on."""
    import zarr

    from .tasks import ModelSpec, select_examples

    spec = ModelSpec(**params.get("model", {"id": "all"}))
    g = zarr.open_group(str(path), mode="r")
    idx = select_examples(g["thickness_A"][...], spec,
                          list(params.get("nominal_thicknesses_A") or []))
    if len(idx) == 0:
        raise ValueError(f"{path}: no examples at thickness {spec.thickness_A} Å for model "
                         f"{spec.id!r}")
    return idx


def write_model_manifest(path: Path, params: dict, train_path: str, shape, size: int) -> None:
    """Provenance of a trained model, and the data geometry it accepts."""
    import zarr

    from .provenance import package_versions

    g = zarr.open_group(str(train_path), mode="r")
    write_json(path, {
        "task": params["task"],
        "classes": list(g.attrs["classes"]),
        "geometry": {"input_shape": list(shape),
                     "angular_sampling_mrad": list(g.attrs.get("angular_sampling_mrad", [])),
                     "scan_step_A": list(g.attrs.get("scan_step_A", [])),
                     "crop": g.attrs.get("crop")},
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
    """Refuse data whose geometry differs from what the model was trained on."""
    geo = manifest["geometry"]
    problems = []
    if list(shape) != list(geo["input_shape"]):
        problems.append(f"example shape {list(shape)} != model input {geo['input_shape']}")
    a = np.asarray(data_attrs.get("angular_sampling_mrad", [np.nan, np.nan]), float)
    if geo["angular_sampling_mrad"] and not np.allclose(a, geo["angular_sampling_mrad"],
                                                        rtol=1e-3):
        problems.append(f"angular sampling {a.tolist()} mrad/pixel != model's "
                        f"{geo['angular_sampling_mrad']}")
    step = data_attrs.get("scan_step_A")
    if geo.get("scan_step_A") and step is not None and not np.allclose(
            step, geo["scan_step_A"], rtol=1e-3):
        problems.append(f"scan step {list(step)} Å != model's {geo['scan_step_A']}")
    if data_attrs.get("task") and data_attrs["task"] != manifest["task"]:
        problems.append(f"task {data_attrs['task']!r} != model's {manifest['task']!r}")
    if problems:
        raise ValueError(f"{where}: does not match the model ({'; '.join(problems)})")


def mc_dropout_probabilities(model, ds, samples: int, seed: int = 0) -> np.ndarray:
    """Mean softmax over ``samples`` forward passes with dropout on (MC
    dropout). Returns (samples, examples, classes)."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    out = []
    for _ in range(samples):
        out.append(np.concatenate([model(x, training=True).numpy() for x, _ in ds]))
    return np.stack(out)


def evaluate(model_path: str, test_path: str, classes: list[str], out_json: str,
             out_predictions: str, mc_samples: int = 30, bins: int = 10,
             ordinal: bool = False) -> dict:
    """Held-out metrics of one model on its test examples (its thickness
    subset): accuracy, per-class precision/recall, per-thickness accuracy,
    confusion matrix, accuracy by step class, within +-1 class (``ordinal``),
    and calibration (ECE, reliability bins) of the plain softmax and of the
    MC-dropout mean over ``mc_samples`` passes."""
    import tensorflow as tf
    import zarr

    from .examples import check_examples
    from .metrics import calibration, classification_metrics

    check_examples(test_path, len(classes))
    manifest = load_model_manifest(model_path)
    params = {"model": manifest.get("model", {"id": "all"}),
              "nominal_thicknesses_A": manifest.get("nominal_thicknesses_A", [])}
    idx = model_indices(test_path, params)
    tin = bool(params["model"].get("thickness_input", False))
    ds, n, shape = zarr_dataset(test_path, cache=False, indices=idx, thickness_input=tin)
    g = zarr.open_group(str(test_path), mode="r")
    check_model_geometry(manifest, dict(g.attrs), shape, str(test_path))
    model = tf.keras.models.load_model(model_path, compile=False)
    batched = ds.batch(64)
    probs = model.predict(batched, verbose=0)
    mc = mc_dropout_probabilities(model, batched, mc_samples) if mc_samples > 1 else probs[None]
    mc_mean = mc.mean(axis=0)
    y = g["y"][...].astype(int)[idx]
    pred = probs.argmax(axis=1)
    metrics = classification_metrics(y, pred, classes, g["thickness_A"][...][idx],
                                     g["step_k"][...][idx], ordinal=ordinal)
    metrics["model"] = params["model"]
    metrics["n_test"] = int(n)
    metrics["n_test_structures"] = int(len(set(g["structure_index"][...][idx].tolist())))
    metrics["task"] = g.attrs["task"]
    metrics["mc_dropout"] = {
        "samples": int(mc_samples),
        "accuracy": float(np.mean(mc_mean.argmax(axis=1) == y)),
        "calibration": calibration(mc_mean, y, bins),
    }
    metrics["softmax_calibration"] = calibration(probs, y, bins)
    from .storage import atomic_file

    with atomic_file(out_predictions) as tmp:
        np.savez(tmp, probabilities=probs, mc_mean=mc_mean, mc_std=mc.std(axis=0), y=y,
                 predicted=pred, index=idx, thickness_A=g["thickness_A"][...][idx])
    write_json(Path(out_json), metrics)
    return metrics
