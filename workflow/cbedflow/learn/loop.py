"""Data-parallel training of every network of the registry (one loop).

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

from ..site import scheduler_job_id
from ..storage import atomic_file, digest, write_json
from .data import input_scaling, target_scaling, zarr_dataset
from .manifest import model_indices, write_model_manifest
from .networks import model_from_params


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
    ``task`` (name), ``task_spec`` (``Task.to_dict``), ``seed`` and the model
    spec; ``expected_ranks``: the ranks the launcher started (another world
    size is refused before any work)."""
    t_start = time.time()
    import tensorflow as tf

    from ..examples import check_examples

    task = params["task_spec"]
    regression = task["kind"] == "regression"
    n_classes = None if regression else len(task["classes"])
    # bad input stops every rank before anything starts
    from .networks import INPUT_NDIM

    ndim = INPUT_NDIM.get(task["network"])
    for path in (train_path, val_path):
        g = check_examples(path, n_classes, ndim)
        if task.get("aux") and "y_aux" not in g:
            raise ValueError(f"{path}: has no second-head targets y_aux for task "
                             f"{task['name']} (aux {', '.join(task['aux'])}); cut its "
                             "examples again (rule crop)")
    from ..distributed import init as init_distributed

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
    tr_idx = model_indices(train_path, params)
    scaling = target_scaling(train_path, tr_idx)  # every rank the same: all examples
    aux = list(task.get("aux") or ())  # a second, regression head (classification tasks)
    aux_scaling = target_scaling(train_path, tr_idx, "y_aux") if aux else None
    in_scaling = (input_scaling(train_path, task["transform"], tr_idx)
                  if task.get("input_scaling") else None)
    tr, n_tr, shape = zarr_dataset(train_path, rank, size, shuffle=True,
                                   seed=int(params["seed"]) + rank, cache=params["cache"],
                                   indices=tr_idx, thickness_input=tin,
                                   transform=task["transform"], target_scaling=scaling,
                                   input_scaling=in_scaling, aux_scaling=aux_scaling)
    va, n_va, vshape = zarr_dataset(val_path, rank, size, cache=params["cache"],
                                    indices=model_indices(val_path, params),
                                    thickness_input=tin, transform=task["transform"],
                                    target_scaling=scaling, input_scaling=in_scaling,
                                    aux_scaling=aux_scaling)
    y_spec = tr.element_spec[1]
    y_shape = tuple((y_spec[0] if isinstance(y_spec, tuple) else y_spec).shape)
    if vshape != shape:
        raise ValueError(f"{val_path}: example shape {vshape} differs from training {shape}")
    # every rank must take the same number of steps or the allreduce hangs
    n_tr_max = backend.max_int(n_tr)
    steps = max(1, int(math.ceil(n_tr_max / batch)))
    n_va_max = backend.max_int(n_va)
    val_steps = max(1, int(math.ceil(n_va_max / batch)))
    tr = tr.repeat().batch(batch).prefetch(tf.data.AUTOTUNE)
    va = va.repeat().batch(batch).prefetch(tf.data.AUTOTUNE)

    model = model_from_params(params, shape, y_shape)
    lr = params["learning_rate"] * lr_scale(params["lr_scaling"], size)
    if params.get("optimizer", "sgd") == "adam":
        base_opt = tf.keras.optimizers.legacy.Adam(learning_rate=lr)
    else:
        base_opt = tf.keras.optimizers.legacy.SGD(learning_rate=lr, momentum=params["momentum"])
    opt = backend.optimizer(base_opt)
    # regression learns standardised targets (mean squared or absolute error);
    # the metric is the mean absolute error in standard deviations
    metric = "mae" if regression else "accuracy"
    loss = task.get("loss", "auto")
    if loss == "auto":
        loss = "mse" if regression else "sparse_categorical_crossentropy"
    if aux:  # two heads: the main loss plus the weighted MSE of the second head
        model.compile(optimizer=opt, loss=[loss, "mse"],
                      loss_weights=[1.0, float(task.get("aux_weight", 1.0))],
                      metrics=[[metric], ["mae"]])
    else:
        model.compile(optimizer=opt, loss=loss, metrics=[metric])

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
                  f"{metric}={logs.get(metric, float('nan')):.4f} "
                  f"val_{metric}={logs.get('val_' + metric, float('nan')):.4f} "
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
                            **{f"val_{metric}": float(logs.get(f"val_{metric}", float("nan")))})
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

    class HeadNames(tf.keras.callbacks.Callback):
        """A two-head network logs ``softmax_accuracy``, ``aux_mae``...: the
        main head's metric is also logged under its one-head name
        (``accuracy``, ``val_accuracy``), which the logs and plots read."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                for pre in ("", "val_"):
                    if f"{pre}softmax_{metric}" in logs:
                        logs[f"{pre}{metric}"] = logs[f"{pre}softmax_{metric}"]

    callbacks = [
        *backend.callbacks(),
        *([HeadNames()] if aux else []),
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
        # no rank exits before rank 0 has said so: a launcher that ends every
        # rank once one exits (horovodrun) cut the message off (seen under load)
        backend.max_int(0)
        return WALLTIME_EXIT
    if rank == 0:
        final = out / "model.keras"
        # a fresh, uncompiled copy: the Horovod optimizer is not serialisable
        clean = model_from_params(params, shape, y_shape)
        clean.set_weights(model.get_weights())
        if params.get("keep_best", True) and best_path.exists():
            clean.load_weights(str(best_path))
            print(f"final model: best validation loss {best['val_loss']:.4f} at epoch "
                  f"{best['epoch']}", flush=True)
        with atomic_file(final) as tmp:
            clean.save(str(tmp))
        write_model_manifest(out / "manifest.json", params, train_path, shape, size,
                             scaling, in_scaling, aux_scaling)
        write_json(out / "train_info.json", {
            "task": params["task"], "ranks": size, "epochs": epochs, "learning_rate": lr,
            "examples_per_rank": n_tr, "input_shape": list(shape), "n_classes": n_classes,
            "network": task["network"],
            "best": best if params.get("keep_best", True) else None,
            "scheduler_job": scheduler_job_id(),
        })
        print(f"model written to {final}", flush=True)
    return 0


