"""Training environment (TF 2.15 + Horovod 0.28.1): bad input, Horovod on 2
ranks, resume after an interruption, and zarr v3 hand-over from the simulation
environment (these groups are written by zarr 3.1 and read by zarr 3.0)."""

import csv
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from cbedflow.storage import atomic_group
from conftest import ROOT, train_env

PARAMS = {
    "seed": 3,
    "train": {"epochs": 8, "batch_size": 8, "learning_rate": 0.05, "momentum": 0.0,
              "lr_scaling": "linear", "conv_filters": [2], "kernel_size": 3, "pool_size": 2,
              "dense_units": 8, "dropout": 0.15, "cache": True, "ranks": 2,
              "launcher": "horovodrun --gloo -np {ranks}"},
}


def write_split(path, n=32, shape=(5, 8, 8), nan=False, seed=0, chunk=1, compressed=True):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.random((n,) + shape).astype(np.float32) * 1e-3
    x[y == 1, ..., 2:6] += 2e-3  # a learnable difference
    if nan:
        x[3, 0, 0, 0] = np.nan
    with atomic_group(path) as g:
        g.create_array("x", data=x, chunks=(chunk,) + shape,
                       **({} if compressed else {"compressors": None}))
        g.create_array("y", data=y.astype(np.int32))
        for k, dt in (("structure_index", "int32"), ("line", "int16"), ("step_k", "int8"),
                      ("intermix_fraction", "float32")):
            g.create_array(k, data=np.zeros(n, dt))
        g.create_array("thickness_A", data=(39.0 + np.arange(n)).astype(np.float32))
        g.attrs.update(task="rough_vs_diffuse", classes=["diffuse", "step"], complete=True)
    return path


def run_train(tmp_path, train, val, launcher=True, extra=(), params=None, **kw):
    env = train_env()
    cmd = [str(env / "bin" / "python"), "-m", "cbedflow", "train", "--params",
           json.dumps(params or PARAMS), "--task", "rough_vs_diffuse", "--train", str(train),
           "--validation", str(val), "--out-dir", str(tmp_path / "model"), *extra]
    if launcher:
        cmd = [str(env / "bin" / "horovodrun"), "--gloo", "-np", "2"] + cmd
    penv = dict(os.environ, PYTHONPATH=str(ROOT / "workflow"),
                PATH=f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}",
                TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=penv, start_new_session=True, **kw)


@pytest.mark.train
@pytest.mark.parametrize("problem", ["missing", "nan", "shape"])
def test_bad_input_stops_before_training(tmp_path, problem):
    train = write_split(tmp_path / "train.zarr")
    val = tmp_path / "validation.zarr"
    if problem == "nan":
        write_split(val, nan=True)
    elif problem == "shape":
        write_split(val, shape=(5, 8))
    p = run_train(tmp_path, train, val, launcher=False)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2, out[-2000:]
    err = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(val) in err[0]
    assert {"missing": "split is missing", "nan": "non-finite",
            "shape": "x has shape"}[problem] in err[0]
    assert "epoch=" not in out and not (tmp_path / "model").exists()


@pytest.mark.train
def test_a_second_head_without_its_targets_stops_before_training(tmp_path):
    """A two-head task (Task.aux) on examples cut without the second head's
    targets (y_aux) stops with one line naming the file and what to rerun."""
    train = write_split(tmp_path / "train.zarr", shape=(8, 8))
    val = write_split(tmp_path / "validation.zarr", shape=(8, 8), seed=1)
    env = train_env()
    params = dict(PARAMS, campaign="toy_campaign:ToyCampaign")
    r = subprocess.run([str(env / "bin" / "python"), "-m", "cbedflow", "train", "--params",
                        json.dumps(params), "--task", "shape_and_offset", "--train", str(train),
                        "--validation", str(val), "--out-dir", str(tmp_path / "model")],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                PYTHONPATH=f"{ROOT / 'tests'}{os.pathsep}{ROOT / 'workflow'}"))
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-2000:]
    err = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(train) in err[0], out[-2000:]
    assert "no second-head targets y_aux for task shape_and_offset" in err[0]
    assert "epoch=" not in out


def _final_val_accuracy(model_dir):
    with open(model_dir / "history.csv") as fh:
        return float(list(csv.DictReader(fh))[-1]["val_accuracy"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same training, never interrupted: the reference for the final metrics."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    train = write_split(tmp / "train.zarr", n=64)
    val = write_split(tmp / "validation.zarr", n=16, seed=1)
    p = run_train(tmp, train, val)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    return _final_val_accuracy(tmp / "model")


def _ranks(launcher_pid):
    import psutil

    return [c for c in psutil.Process(launcher_pid).children(recursive=True)
            if "cbedflow" in c.cmdline() and "train" in c.cmdline()]


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("victim", ["launcher and ranks", "one rank", "launcher"])
def test_two_ranks_train_and_resume_after_sigkill(tmp_path, victim, uninterrupted):
    """SIGKILL mid-training (the whole job, one Horovod rank, or the launcher),
    then the same command: it resumes from the last checkpoint, the epoch count
    continues, and the final metrics are within noise of an uninterrupted run."""
    import psutil

    train = write_split(tmp_path / "train.zarr", n=64)
    val = write_split(tmp_path / "validation.zarr", n=16, seed=1)
    state = tmp_path / "model" / "checkpoints" / "state.json"
    p = run_train(tmp_path, train, val)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 3:
            break
        time.sleep(0.2)
    assert p.poll() is None, "training ended before it could be interrupted"
    ranks = _ranks(p.pid)
    assert len(ranks) == 2, [r.cmdline() for r in ranks]
    if victim == "launcher and ranks":
        os.killpg(p.pid, signal.SIGKILL)
    elif victim == "one rank":
        ranks[1].send_signal(signal.SIGKILL)
    else:
        os.kill(p.pid, signal.SIGKILL)
    try:  # horovodrun ends the job when a rank dies; the orphaned ranks of a
        p.wait(timeout=60)  # killed launcher are torn down as a scheduler would
    except subprocess.TimeoutExpired:
        pass
    time.sleep(2)
    for r in ranks:
        if r.is_running():
            r.kill()
    psutil.wait_procs(ranks, timeout=30)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    interrupted_at = json.loads(state.read_text())["epoch"]
    assert 3 <= interrupted_at < 8
    assert not (tmp_path / "model" / "model.keras").exists()

    p = run_train(tmp_path, train, val)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    assert "resuming from" in out and f"at epoch {interrupted_at}" in out
    for rank in (0, 1):
        epochs = [int(e) for e in re.findall(
            rf"hvd rank={rank} size=2 epoch=(\d+)/8 batches=4", out)]
        assert epochs == list(range(interrupted_at + 1, 9)), (rank, epochs)
    with open(tmp_path / "model" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(8))  # count continues
    assert (tmp_path / "model" / "model.keras").exists()
    assert float(rows[-1]["accuracy"]) > 0.6
    # within noise of the uninterrupted run: 16 validation examples, 3 of them
    assert abs(_final_val_accuracy(tmp_path / "model") - uninterrupted) <= 3 / 16 + 1e-9


@pytest.mark.train
@pytest.mark.slow
def test_walltime_stops_cleanly_and_rerun_resumes(tmp_path):
    train = write_split(tmp_path / "train.zarr", n=64)
    val = write_split(tmp_path / "validation.zarr", n=16, seed=1)
    # 1 min walltime minus the 60 s margin: the deadline has passed by the
    # end of the first epoch, so training stops there
    p = run_train(tmp_path, train, val, extra=["--walltime-min", "1"])
    out, _ = p.communicate(timeout=300)
    assert p.returncode != 0 and "walltime: stopped cleanly after epoch" in out, out[-3000:]
    state = json.loads((tmp_path / "model" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1  # (exit 75 from the ranks; horovodrun reports 1)
    assert not (tmp_path / "model" / "model.keras").exists()
    p = run_train(tmp_path, train, val)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    assert f"at epoch {state['epoch']}" in out
    with open(tmp_path / "model" / "history.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == list(range(8))


@pytest.mark.train
def test_config_input_transform_and_scaling_reach_the_model_manifest(tmp_path):
    """train.input_transform / train.input_scaling override the task's; the
    manifest keeps them (evaluate and predict read the transform from it)
    with the per-point statistics of the training examples."""
    train = write_split(tmp_path / "train.zarr", n=32)
    val = write_split(tmp_path / "validation.zarr", n=16, seed=1)
    params = dict(PARAMS, train=dict(PARAMS["train"], epochs=1,
                                     input_transform="log10_standardize",
                                     input_scaling=True))
    p = run_train(tmp_path, train, val, launcher=False, params=params)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    m = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert m["task_spec"]["transform"] == "log10_standardize"
    assert m["task_spec"]["input_scaling"] is True
    mean = np.asarray(m["input_scaling"]["mean"])
    assert mean.shape == (5, 8, 8) and np.all(np.asarray(m["input_scaling"]["std"]) > 0)


@pytest.mark.train
def test_zarr_dataset_reads_the_selected_examples_in_order(tmp_path):
    """Block reads keep each rank's shard and its order (rank r gets
    indices[r::size]), through zarr (compressed, one example per chunk) and
    through TensorFlow's own file reads (the plain layout the stages write,
    16 examples per chunk, last chunk partial), with the same values."""
    zpath = write_split(tmp_path / "z.zarr", n=150, shape=(2, 4, 4))
    rpath = write_split(tmp_path / "r.zarr", n=150, shape=(2, 4, 4), chunk=16,
                        compressed=False)
    code = f"""
import sys, numpy as np, zarr
sys.path.insert(0, {str(ROOT / 'workflow')!r})
from cbedflow.learn.data import raw_chunk_files, zarr_dataset, preprocess
assert raw_chunk_files({str(zpath)!r}) is None  # compressed: read through zarr
files = raw_chunk_files({str(rpath)!r})
assert files is not None and len(files) == 10, files
sel = np.array([149] + list(range(0, 140, 1)) + [3, 2])
for path in ({str(zpath)!r}, {str(rpath)!r}):
    g = zarr.open_group(path, mode="r")
    for rank in (0, 1):
        ds, n, shape = zarr_dataset(path, rank, 2, cache=False, indices=sel)
        want = sel[rank::2]
        got = [(x.numpy(), int(y)) for x, y in ds]
        assert n == len(want) == len(got), (n, len(want), len(got))
        for (x, y), i in zip(got, want):
            assert y == int(g["y"][i]), (y, i)
            np.testing.assert_allclose(x, preprocess(g["x"][i]).numpy(), rtol=1e-6)
        ts = [float(t[0]) for (x, t), y in zarr_dataset(path, rank, 2, indices=sel,
                                                          thickness_input=True)[0]]
        np.testing.assert_allclose(ts, (39.0 + want) / 100.0, rtol=1e-6)
print("ok")
"""
    env = train_env()
    r = subprocess.run([str(env / "bin" / "python"), "-c", code], capture_output=True,
                       text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


NETWORK_CHECK = r"""
import json, numpy as np, tensorflow as tf
from cbedflow.learn.networks import Head, build_network, NETWORKS
p = {"conv_filters": [4, 8], "kernel_size": 3, "pool_size": 2, "dense_units": 8, "dropout": 0.1}
out = {}
for name, shape in (("cnn3d", (5, 8, 8)), ("cnn2d", (12, 10)), ("unet1d", (30,))):
    for head in (Head("classification", 3), Head("regression", 2)):
        m = build_network(name, shape, head, p)
        y = m(np.zeros((4,) + shape + (1,), np.float32)).numpy()
        out[f"{name}/{head.kind}"] = list(y.shape)
try:
    build_network("cnn2d", (5, 8, 8), Head("regression", 1), p)
except ValueError as e:
    out["wrong_ndim"] = str(e)
# one network, two heads: classes and a linear regression head on the same features
for name, shape in (("cnn3d", (5, 8, 8)), ("cnn2d", (12, 10))):
    m = build_network(name, shape, Head("classification", 3, aux=2), p)
    ys = m(np.zeros((4,) + shape + (1,), np.float32))
    out[f"{name}/two_heads"] = [list(y.shape) for y in ys] + [m.output_names]
try:
    build_network("unet1d", (30,), Head("classification", 3, aux=2), p)
except ValueError as e:
    out["unet_aux"] = str(e)
# pooling the first axis whole: a feature found anywhere along the line gives
# the same output (a bump at position 3 or 5 of 9), the flattened CNN does not
bump = np.zeros((2, 9, 8, 8, 1), np.float32)
bump[0, 3, 2:5, 2:5] = 1.0
bump[1, 5, 2:5, 2:5] = 1.0
for pooling in ("none", "max", "average"):
    tf.keras.utils.set_random_seed(1)
    m = build_network("cnn3d", (9, 8, 8), Head("classification", 3),
                      dict(p, first_axis_pooling=pooling))
    y = m(bump, training=False).numpy()
    out[f"shift/{pooling}"] = float(np.abs(y[0] - y[1]).max())
# a curve-to-curve map the 1D U-Net learns: the input's running mean
tf.keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(256, 30, 1)).astype(np.float32)
y = np.stack([np.convolve(c[:, 0], np.ones(3) / 3, "same") for c in x])[..., None]
m = build_network("unet1d", (30,), Head("regression", 1), dict(p, dropout=0.0))
m.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="mse")
h = m.fit(x, y, epochs=30, batch_size=32, verbose=0).history["loss"]
out["unet_loss"] = [h[0], h[-1]]
print(json.dumps(out))
"""


def test_network_registry_shapes_and_a_unet_that_learns():
    """Every network of the registry builds for both heads with the right
    output shape (a curve of targets for the U-Net), the CNNs with two heads
    at once (softmax, then the regression ``aux``), refuses examples of the
    wrong dimensions, and the 1D U-Net learns a curve-to-curve map (a
    running mean) far below the targets' variance."""
    env = train_env()
    r = subprocess.run([str(env / "bin" / "python"), "-c", NETWORK_CHECK], capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT / "workflow"),
                                                         TF_CPP_MIN_LOG_LEVEL="2"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["cnn3d/classification"] == [4, 3] and out["cnn3d/regression"] == [4, 2]
    assert out["cnn2d/classification"] == [4, 3] and out["cnn2d/regression"] == [4, 2]
    assert out["unet1d/classification"] == [4, 3]
    assert out["unet1d/regression"] == [4, 30, 2]  # padded to 32 inside, cropped back
    assert "takes examples of 2 dimensions" in out["wrong_ndim"]
    for name in ("cnn3d", "cnn2d"):
        assert out[f"{name}/two_heads"] == [[4, 3], [4, 2], ["softmax", "aux"]]
    assert "no second (aux) head" in out["unet_aux"]
    assert out["shift/max"] < 1e-6 and out["shift/average"] < 1e-6  # shift invariant
    assert out["shift/none"] > 1e-4  # the paper's flattened features see the position
    first, last = out["unet_loss"]
    assert last < 0.1 * first and last < 0.05, out["unet_loss"]  # target variance ~0.33
