"""Packing simulation units into batch jobs, spread over MPI ranks.

A campaign has thousands of (sample, part, batch) units (``Campaign.units``,
e.g. structure x thickness x phonon batch); a site
allows about a hundred queued jobs. One Snakemake job (``simulate_job``) packs
``site.units_per_job`` consecutive units; inside it, mpi4py spreads them over
the allocation's ranks (one rank per GPU, launched by jsrun/srun/mpirun),
round-robin, and every rank writes its own unit groups atomically.

A rerun of a job (Snakemake retry, requeue after preemption) skips every unit
whose group is already complete, so a failed job retries only its own
unfinished units and nothing finished is simulated twice.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from .campaigns import Campaign
from .site import scheduler_job_id
from .storage import CorruptOutputError, digest, open_complete, write_json


def job_ids(campaign: Campaign, units_per_job: int) -> list[str]:
    """Ids of the packed jobs: ``j00000``, ``j00001``, ..."""
    n = len(campaign.units())
    return [f"j{i:05d}" for i in range(-(-n // units_per_job))]


def job_units(campaign: Campaign, units_per_job: int, job: str) -> list[tuple[str, str, int]]:
    """The units of packed job ``job`` (consecutive in campaign order)."""
    i = int(job.lstrip("j"))
    units = campaign.units()
    if not 0 <= i * units_per_job < len(units):
        raise ValueError(f"job {job!r} does not exist: the campaign has "
                         f"{len(job_ids(campaign, units_per_job))} jobs")
    return units[i * units_per_job:(i + 1) * units_per_job]


def mpi_comm():
    """MPI.COMM_WORLD when started under an MPI launcher, else None."""
    launched = any(k in os.environ for k in (
        "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID",
        "SLURM_STEP_ID", "JSM_NAMESPACE_RANK"))
    if not launched:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def unit_checksum(path: str | Path, signal: str) -> str:
    """sha256 (16 hex digits) of a complete unit's signal array."""
    g = open_complete(path, array=signal)
    return digest(g[signal][...])


def is_complete(path: str | Path, key: str | None = None, signal: str | None = None) -> bool:
    """True if ``path`` is a complete unit (with the array ``signal``)
    computed with settings ``key``."""
    try:
        g = open_complete(path, array=signal)
    except CorruptOutputError:
        return False
    return key is None or g.attrs.get("provenance", {}).get("unit_key") == key


def run_job(
    campaign: Campaign,
    units: list[tuple[str, str, int]],
    simulate_one: Callable[[str, str, int, str], None],
    rank: int = 0,
    size: int = 1,
    key: Callable[[str, str], str] | None = None,
    progress: Callable[[str], None] = print,
) -> list[dict]:
    """Simulate this rank's share of ``units``; returns one record per unit.

    ``simulate_one(name, part, batch, out_path)`` does the work; a unit
    already complete with the settings ``key(name, part)`` is skipped.
    """
    records = []
    mine = units[rank::size]
    t0 = time.perf_counter()
    for k, (name, part, batch) in enumerate(mine):
        out = campaign.unit_path(name, part, batch)
        status = "skipped (complete)"
        if not is_complete(out, None if key is None else key(name, part), campaign.signal):
            remove_stale_temporaries(out)
            simulate_one(name, part, batch, out)
            status = "simulated"
        records.append({"unit": out, "rank": rank, "host": socket.gethostname(),
                        "scheduler_job": scheduler_job_id(),
                        "status": status, "checksum": unit_checksum(out, campaign.signal)})
        progress(f"rank {rank}/{size}: unit {k + 1}/{len(mine)} {out} {status} "
                 f"({time.perf_counter() - t0:.1f} s)")
    return records


def remove_stale_temporaries(path: str | Path) -> int:
    """Remove temporary groups a killed writer of ``path`` left behind.

    A unit is written by one process at a time (one rank of one job), so any
    ``.<name>.tmp-*`` sibling is garbage from an interrupted attempt.
    """
    import shutil

    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.tmp-*")) if path.parent.exists() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


def write_manifest(path: str | Path, job: str, records: list[dict], size: int) -> None:
    """Atomically write the job manifest (rank 0)."""
    write_json(path, {"job": job, "ranks": size,
                      "units": sorted(records, key=lambda r: r["unit"])}, indent=1)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_packed_job(params: dict, job: str, units_per_job: int, ranks: int | None,
                   manifest: str | Path) -> None:
    """One packed batch job (``cbedflow simulate-job``): its units spread over
    the MPI ranks the launcher started, a manifest written by rank 0.

    One rank needs no MPI: under a one-task srun (the Slurm jobstep's
    wrapper) the PMI descriptor is not passed on to this process, and MPI
    initialisation would fail where the site sets a PMI (MpiDefault=pmi2).
    Ranks that are not one world (``ranks`` differs from the world size)
    are refused before any work, or each would do every unit.
    """
    from .campaigns import get_campaign
    from .forward import check_device
    from .site import check_world

    comm = None if ranks == 1 else mpi_comm()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    if ranks is not None:
        check_world(size, ranks, f"job {job}", "mpi_launcher")
    if rank == 0:
        _log(f"job {job}: one MPI world of {size} rank(s)")
    check_device(params.get("device", "cpu"))
    camp = get_campaign(params)
    units = job_units(camp, units_per_job, job)
    if rank == 0:
        _log(f"job {job}: {len(units)} units on {size} rank(s)")

    def simulate_one(name, part, batch, out):
        camp.simulate_unit(name, part, batch, out,
                           progress=lambda m: _log(f"rank {rank}: {m}"))

    try:
        records = run_job(camp, units, simulate_one, rank, size, key=camp.unit_key,
                          progress=_log)
    except BaseException:
        if comm is not None and size > 1:  # a failed rank must not leave the others waiting
            import traceback

            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            comm.Abort(1)
        raise
    gathered = comm.gather(records, root=0) if comm else [records]
    if rank == 0:
        flat = [r for part in gathered for r in part]
        write_manifest(manifest, job, flat, size)
        by_rank: dict[int, list[str]] = {}
        for r in flat:
            by_rank.setdefault(r["rank"], []).append(r["status"])
        _log(f"job {job} done: " + ", ".join(
            f"rank {k}: {v.count('simulated')} simulated, {len(v) - v.count('simulated')} "
            "skipped" for k, v in sorted(by_rank.items())))
