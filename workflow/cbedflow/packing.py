"""Packing simulation units into batch jobs, spread over MPI ranks.

A campaign has thousands of (structure, thickness, phonon batch) units; a site
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
import time
from pathlib import Path
from typing import Callable


from .campaign import Campaign
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


def unit_checksum(path: str | Path) -> str:
    """sha256 (16 hex digits) of a complete unit's CBED array."""
    g = open_complete(path)
    return digest(g["cbed"][...])


#: config sections whose every key shapes every unit
UNIT_SECTIONS = ("seed", "device", "microscope", "simulation")
#: keys of ``structures`` that shape every structure (the rest choose which
#: structures exist and with which parameters: per_class, step_classes,
#: thicknesses_A, intermix_fraction; a structure's own spec enters its key)
_GEOMETRY_KEYS = ("n_substrate", "n_film", "y_repeats")


def unit_key(config: dict, structure: str | None = None, thickness: str | None = None) -> str:
    """Hash of the settings a unit is computed with: the sections that shape
    every unit, the structure geometry, the unit's own structure spec (kind,
    step class or intermixing fraction, seed; the intermixing decay for
    diffuse ones) and thickness (all thicknesses for a series unit). Adding
    structures or thicknesses (except to a series unit), or changing a
    parameter that only other structures use, leaves a unit's key unchanged,
    so it is not recomputed."""
    from dataclasses import asdict

    from .campaign import Campaign
    from .config import config_hash

    from .campaign import SERIES

    part = {k: config[k] for k in UNIT_SECTIONS if k in config}
    # exit_planes chooses which units exist (series or per thickness), which
    # the unit's thickness label says; it does not change a unit's physics
    part["simulation"] = {k: v for k, v in part.get("simulation", {}).items()
                          if k != "exit_planes"}
    part["geometry"] = {k: config["structures"][k] for k in _GEOMETRY_KEYS}
    if thickness == SERIES:
        part["series_A"] = sorted(config["structures"]["thicknesses_A"])
    if structure is not None:
        _, spec = Campaign(config).by_name[structure]
        part["structure"] = asdict(spec)
        if spec.kind == "diffuse":
            part["geometry"]["intermix_decay"] = config["structures"]["intermix_decay"]
    part["unit"] = [structure, thickness]
    return config_hash(part)


def is_complete(path: str | Path, key: str | None = None) -> bool:
    """True if ``path`` is a complete unit computed with settings ``key``."""
    try:
        g = open_complete(path)
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

    ``simulate_one(structure, thickness, batch, out_path)`` does the work; a
    unit already complete with the settings ``key(structure, thickness)`` is
    skipped.
    """
    records = []
    mine = units[rank::size]
    t0 = time.perf_counter()
    for k, (name, thickness, batch) in enumerate(mine):
        out = campaign.unit_path(name, thickness, batch)
        status = "skipped (complete)"
        if not is_complete(out, None if key is None else key(name, thickness)):
            remove_stale_temporaries(out)
            simulate_one(name, thickness, batch, out)
            status = "simulated"
        records.append({"unit": out, "rank": rank, "host": socket.gethostname(),
                        "scheduler_job": scheduler_job_id(),
                        "status": status, "checksum": unit_checksum(out)})
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
