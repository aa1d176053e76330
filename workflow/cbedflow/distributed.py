"""The distributed-training backend: Horovod, and nothing else imports it.

:func:`init` starts Horovod and checks that the launcher made one world of
the expected size. Under ``horovodrun`` (and ``mpirun``/``jsrun``/``srun``
with a Horovod built with MPI) Horovod finds its peers itself. Under a plain
``srun`` with a Horovod built without MPI (the pip build used here: Gloo
only), every rank would start alone; :func:`slurm_gloo_rendezvous` then plays
``horovodrun``'s part: rank 0 starts Horovod's own rendezvous server
(``horovod.runner.http.http_server.RendezvousServer``), the ranks exchange
host names and the server's address through files in a directory on the
shared file system, and every rank gets the ``HOROVOD_*`` variables that
``horovodrun --gloo`` would have set (``horovod.runner.gloo_run``).
Hand-written because Horovod has no Slurm launcher for Gloo.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .site import check_world
from .storage import write_json

#: How long ranks wait for each other at the rendezvous [s].
RENDEZVOUS_TIMEOUT_S = 600.0


def _slurm_step() -> dict | None:
    """Rank, size, local rank and host of this process if it is one of
    several tasks of a Slurm job step, else None."""
    env = os.environ
    ntasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" not in env or "SLURM_STEP_ID" not in env or not ntasks:
        return None
    if int(ntasks) < 2:
        return None
    return {"rank": int(env["SLURM_PROCID"]), "size": int(ntasks),
            "local_rank": int(env.get("SLURM_LOCALID", 0)),
            "host": env.get("SLURMD_NODENAME") or socket.gethostname(),
            "step": f"{env.get('SLURM_JOB_ID', '0')}.{env['SLURM_STEP_ID']}"}


def _wait_for(paths: list[Path], what: str, timeout_s: float) -> list[dict]:
    deadline = time.time() + timeout_s
    while True:
        missing = [p for p in paths if not p.exists()]
        if not missing:
            return [json.loads(p.read_text()) for p in paths]
        if time.time() > deadline:
            raise RuntimeError(f"rendezvous: waited {timeout_s:.0f} s for {what} "
                               f"({len(missing)} missing, e.g. {missing[0]})")
        time.sleep(0.2)


def _iface_for(address: str) -> str:
    """Network interface that carries ``address`` (loopback for 127.x)."""
    import psutil  # a Horovod dependency

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == address for a in addrs):
            return name
    raise RuntimeError(f"rendezvous: no network interface has the address {address}")


def host_plan(ranks: list[dict]) -> list[dict]:
    """Horovod slot info (rank, size, local and cross rank and size) of every
    rank from ``ranks`` (each with rank, host, local_rank), as
    ``horovod.runner.common.util.hosts.get_host_assignments`` assigns them:
    cross rank = index of the host among the hosts that have this local rank."""
    ranks = sorted(ranks, key=lambda r: r["rank"])
    hosts: list[str] = []
    for r in ranks:
        if r["host"] not in hosts:
            hosts.append(r["host"])
    local_size = {h: sum(r["host"] == h for r in ranks) for h in hosts}
    out = []
    for r in ranks:
        same_local = [h for h in hosts if any(q["host"] == h and q["local_rank"] == r["local_rank"]
                                              for q in ranks)]
        out.append({"hostname": r["host"], "rank": r["rank"], "local_rank": r["local_rank"],
                    "cross_rank": same_local.index(r["host"]), "size": len(ranks),
                    "local_size": local_size[r["host"]], "cross_size": len(same_local)})
    return out


def _rendezvous_dir(directory: str | Path, step: dict) -> Path:
    """The files of one Slurm step's rendezvous, under ``directory``."""
    return Path(directory) / f".rendezvous-{step['step']}"


def slurm_gloo_rendezvous(directory: str | Path, timeout_s: float = RENDEZVOUS_TIMEOUT_S,
                          ) -> object | None:
    """Set up Horovod's Gloo rendezvous for the tasks of this Slurm step.

    Does nothing (returns None) outside a multi-task Slurm step, under
    ``horovodrun`` (``HOROVOD_RANK`` set) or with a Horovod built with MPI.
    Rank 0 returns the running rendezvous server (keep it alive).
    """
    step = _slurm_step()
    if step is None or "HOROVOD_RANK" in os.environ:
        return None
    import horovod.tensorflow as hvt

    if hvt.mpi_built():
        return None
    d = _rendezvous_dir(directory, step)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / f"rank{step['rank']}.json",
                {k: step[k] for k in ("rank", "host", "local_rank")})
    ranks = _wait_for([d / f"rank{i}.json" for i in range(step["size"])],
                      f"{step['size']} ranks", timeout_s)
    plan = host_plan(ranks)
    server = None
    single_host = len({r["host"] for r in ranks}) == 1
    if step["rank"] == 0:
        from horovod.runner.common.util.hosts import SlotInfo
        from horovod.runner.http.http_server import RendezvousServer

        addr = "127.0.0.1" if single_host else socket.gethostbyname(step["host"])
        server = RendezvousServer()
        port = server.start()
        server.init([SlotInfo(**p) for p in plan])
        write_json(d / "server.json", {"addr": addr, "port": port})
    (srv,) = _wait_for([d / "server.json"], "rank 0's rendezvous server", timeout_s)
    mine = plan[step["rank"]]
    local = "127.0.0.1" if single_host else socket.gethostbyname(step["host"])
    os.environ.update({
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": srv["addr"],
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(srv["port"]),
        "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_IFACE": _iface_for(local),
        "HOROVOD_HOSTNAME": mine["hostname"],
        **{f"HOROVOD_{k.upper()}": str(mine[k]) for k in
           ("rank", "size", "local_rank", "local_size", "cross_rank", "cross_size")},
    })
    return server


class HorovodBackend:
    """What the training loop needs from a data-parallel backend, on Horovod:
    rank and size, a max-allreduce and a broadcast of scalars, the optimizer
    wrapper and the callbacks that keep the ranks in step. Another backend
    (e.g. tf.distribute where Horovod no longer builds) is another class with
    these members."""

    name = "horovod"

    def __init__(self, hvd, hvt, server=None):
        self._hvd, self._hvt, self._server = hvd, hvt, server

    @property
    def rank(self) -> int:
        return int(self._hvd.rank())

    @property
    def size(self) -> int:
        return int(self._hvd.size())

    def max_int(self, value: int) -> int:
        """The largest ``value`` over the ranks."""
        import tensorflow as tf

        return int(self._hvt.allreduce(tf.constant(int(value)), op=self._hvt.Max).numpy())

    def broadcast_float(self, value: float, root: int = 0) -> float:
        """Rank ``root``'s ``value`` on every rank."""
        import tensorflow as tf

        return float(self._hvt.broadcast(tf.constant(float(value)), root).numpy())

    def optimizer(self, opt):
        """``opt`` with its gradients averaged over the ranks."""
        return self._hvd.DistributedOptimizer(opt)

    def callbacks(self) -> list:
        """Rank 0's initial weights to every rank; epoch metrics averaged."""
        return [self._hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                self._hvd.callbacks.MetricAverageCallback()]


def init(expected_ranks: int | None, rendezvous_dir: str | Path) -> HorovodBackend:
    """Start Horovod and return the training backend.

    ``expected_ranks``: the ranks the launcher started (None: not checked);
    a world of another size stops every rank before any work.
    """
    import horovod.tensorflow as hvt
    import horovod.tensorflow.keras as hvd

    server = slurm_gloo_rendezvous(rendezvous_dir)
    hvd.init()  # returns once every rank has met: the files are no longer needed
    if server is not None:
        import shutil

        shutil.rmtree(_rendezvous_dir(rendezvous_dir, _slurm_step()), ignore_errors=True)
    if expected_ranks is not None:
        check_world(hvd.size(), expected_ranks, "training", "train_launcher")
    return HorovodBackend(hvd, hvt, server)  # keeps rank 0's rendezvous server alive
