"""What a job asks the scheduler for, derived from the site keys alone.

A packed simulation job and a training job are each one set of ranks. The
rules (``workflow/rules/common.smk``) turn a :class:`JobShape` into
Snakemake resources that the Slurm executor plugin (2.8) and the LSF submit
hook (:mod:`cbedflow.lsf`) translate as follows:

- ``nodes`` -> ``--nodes`` / ``bsub -nnodes``;
- ``tasks`` -> ``--ntasks`` (one task per rank);
- ``gpu`` -> ``--gpus`` (one per rank on a GPU site or with device gpu), with ``tasks_per_gpu``
  0 so that the plugin adds no ``--ntasks-per-gpu`` (it would otherwise take
  ``tasks`` as tasks *per GPU*: 32 x 32 = 1,024 tasks);
- ``cpus_per_task`` -> ``--cpus-per-task`` (``site.cpus_per_rank``, not the
  rule's threads);
- ``mpi`` (only with several ranks): the job's command runs in the batch
  step itself, not inside a one-task ``srun`` that would hold every GPU and
  leave the launcher's own ``srun`` pending for ever.

Profiles add only what the site's scheduler needs besides (account,
partition, constraint), so the request and the launcher cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class JobShape:
    """One job's ranks and what they need.

    Parameters
    ----------
    ranks : int
        Processes started by the launcher (one MPI world).
    nodes : int
        Nodes the job asks for.
    gpus : int
        GPUs in all (0 on CPU, else one per rank).
    cpus_per_rank : int
        CPU cores per rank.
    """

    ranks: int
    nodes: int
    gpus: int
    cpus_per_rank: int

    def resources(self) -> dict:
        """Snakemake resources of the job (see the module docstring)."""
        res = {"nodes": self.nodes, "tasks": self.ranks, "gpu": self.gpus,
               "tasks_per_gpu": 0, "cpus_per_task": self.cpus_per_rank}
        if self.ranks > 1:
            res["mpi"] = "launcher"
        return res

    def launcher(self, template: str) -> str:
        """``template`` (a site launcher) with {ranks}, {nodes} and {cpus} filled in."""
        return template.format(ranks=self.ranks, nodes=self.nodes, cpus=self.cpus_per_rank)


def job_shape(site: dict, device: str, ranks: int) -> JobShape:
    """The shape of a job of ``ranks`` ranks at ``site`` (the validated
    ``site`` config section) computing on ``device`` (cpu or gpu).

    A GPU site (``gpus_per_node`` > 0) gives every rank a GPU and packs
    ``gpus_per_node`` ranks per node; a CPU site packs
    ``cores_per_node // cpus_per_rank`` ranks per node (one node if unknown)."""
    cpus = int(site.get("cpus_per_rank", 1))
    gpn = int(site.get("gpus_per_node", 0))
    # On a GPU site every rank holds one GPU whatever the device: nodes are
    # charged whole there, and the site's launcher binds a GPU per task.
    gpus = ranks if (gpn or device == "gpu") else 0
    if gpn:
        nodes = math.ceil(ranks / gpn)
    else:
        cores = site.get("cores_per_node")
        nodes = math.ceil(ranks / max(1, int(cores) // cpus)) if cores else 1
    return JobShape(ranks=ranks, nodes=nodes, gpus=gpus, cpus_per_rank=cpus)


def scheduler_job_id() -> str | None:
    """The batch system's id of the job this process runs in (Slurm, LSF),
    as ``VAR=id``."""
    import os

    for var in ("SLURM_JOB_ID", "LSB_JOBID"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}"
    return None


class WorldSizeError(RuntimeError):
    """The launcher did not start the expected ranks as one MPI world."""


def check_world(size: int, expected: int, what: str, launcher_key: str) -> None:
    """Refuse a world of ``size`` ranks where ``expected`` were launched.

    Independent single-rank processes (``srun`` without the site's PMI) would
    each do the whole job's work; they must stop before any work starts.
    """
    if size != expected:
        raise WorldSizeError(
            f"{what}: this rank sees an MPI world of {size} rank(s), expected {expected}: "
            f"the launcher did not start one world (every rank would do all the work); "
            f"valid: a launcher that starts one world of {expected} (site.{launcher_key}; "
            "on Slurm, srun with the site's PMI, e.g. srun --mpi=pmi2)")
