"""Fault injection on a real (small) simulation campaign: the Snakemake driver
and a running simulation job killed with SIGKILL, then the same command again;
a config change mid-campaign. Real Snakemake, real abTEM, real zarr."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
import zarr

from cbedflow.campaigns import get_campaign as Campaign
from cbedflow.config import validate
from conftest import ROOT

BIN = Path(sys.executable).parent

#: 8 structures x 1 thickness x 2 phonon batches = 16 units, 2 per job: small
#: enough for seconds per job, enough jobs to be killed mid-campaign.
SMALL = {
    "seed": 7,
    "structures": {"per_class": 4, "n_substrate": 1, "n_film": 2,
                   "step_classes": [2, 4, 6, 8]},
    "simulation": {"phonons": {"configs": 2, "batch_size": 1},
                   "scan": {"extent_cells": 2.0, "positions_x": 5, "positions_y": 2}},
    "crop": {"pattern_px": 32, "binning": 2},
    "site": {"units_per_job": 2},
}


def write_config(wd: Path, **changes) -> Path:
    cfg = json.loads(json.dumps(SMALL))
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        d = cfg
        for p in path:
            d = d[p]
        d[last] = value
    path = wd / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake_cmd(config: Path, *extra):
    return [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--cores", "2",
            "--configfile", str(config), "--rerun-incomplete", *extra, "results/dataset.zarr"]


def env():
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def run(cmd, wd):
    r = subprocess.run(cmd, cwd=wd, env=env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r


def units(wd: Path, config: Path) -> dict[str, Path]:
    camp = Campaign(validate(yaml.safe_load(config.read_text())))
    return {u: wd / u for u in camp.unit_paths()}


def stamps(paths: dict[str, Path]) -> dict[str, int]:
    """zarr.json mtime of every complete unit (written last, once per simulation)."""
    out = {}
    for u, p in paths.items():
        meta = p / "zarr.json"
        if meta.exists() and json.loads(meta.read_text()).get("attributes", {}).get("complete"):
            out[u] = meta.stat().st_mtime_ns
    return out


def dataset_digest(wd: Path) -> tuple[str, list]:
    g = zarr.open_group(str(wd / "results" / "dataset.zarr"), mode="r")
    cbed = np.ascontiguousarray(g["cbed"][...])
    return hashlib.sha256(cbed.tobytes()).hexdigest(), g.attrs["unit_checksums"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small campaign's simulation half, uninterrupted."""
    wd = tmp_path_factory.mktemp("reference")
    config = write_config(wd)
    run(snakemake_cmd(config), wd)
    return {"dir": wd, "digest": dataset_digest(wd), "config": config}


def _simulation_jobs(wd: Path) -> list[psutil.Process]:
    """Running ``cbedflow simulate-job`` processes of the campaign in ``wd``."""
    jobs = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if ("simulate-job" in " ".join(p.info["cmdline"] or [])
                    and p.info["cwd"] == str(wd)):
                jobs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return jobs


def _kill_tree(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_sigkill_of_driver_and_job_then_rerun_is_bit_identical(reference, tmp_path):
    config = write_config(tmp_path)
    paths = units(tmp_path, config)
    driver = subprocess.Popen(snakemake_cmd(config), cwd=tmp_path, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    # wait until some units are complete and a job is simulating another one
    # (a unit is computed in memory and written at its end, so the job process,
    # not a temporary group, is what shows a simulation in flight)
    deadline = time.time() + 300
    while time.time() < deadline:
        done = stamps(paths)
        jobs = _simulation_jobs(tmp_path)
        if 3 <= len(done) < len(paths) - 2 and jobs:
            break
        if driver.poll() is not None:
            pytest.fail(f"the driver exited ({driver.returncode}) before the fault "
                        f"could be injected ({len(done)} of {len(paths)} units done)")
        time.sleep(0.1)
    else:
        pytest.fail("the campaign never reached the point to inject the fault")
    _kill_tree(driver.pid)  # the driver: SIGKILL, no cleanup
    for p in jobs:  # and every simulation job it had running
        _kill_tree(p.pid)
    driver.wait(timeout=30)
    psutil.wait_procs(jobs, timeout=30)
    before = stamps(paths)
    assert 0 < len(before) < len(paths), "the fault must hit mid-campaign"
    # the killed job left no unit a later stage accepts
    assert not (tmp_path / "results" / "dataset.zarr").exists()

    # the same command again: Snakemake's lock from the killed driver is stale;
    # `--unlock` is the documented recovery (README, reliability)
    locked = subprocess.run(snakemake_cmd(config), cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=300)
    if locked.returncode != 0:
        assert "cannot be locked" in locked.stdout + locked.stderr
        run(snakemake_cmd(config, "--unlock"), tmp_path)
    run(snakemake_cmd(config), tmp_path)
    after = stamps(paths)
    assert len(after) == len(paths)
    redone = [u for u, t in before.items() if after[u] != t]
    assert redone == [], f"finished units simulated again: {redone}"
    assert not list((tmp_path / "results" / "simulations").rglob("*.tmp-*"))
    assert dataset_digest(tmp_path) == reference["digest"]


@pytest.mark.slow
def test_config_change_reruns_exactly_the_affected_units(reference, tmp_path):
    """Changing the intermixing range changes every diffuse structure and no
    step structure: only the diffuse units are simulated again, and the
    dataset is collected again."""
    import shutil

    wd = tmp_path / "campaign"
    shutil.copytree(reference["dir"], wd, symlinks=True)
    config = write_config(wd)
    paths = units(wd, config)
    before = stamps(paths)
    assert len(before) == len(paths)
    dataset_before = (wd / "results" / "dataset.zarr" / "zarr.json").stat().st_mtime_ns
    changed = write_config(wd, **{"structures.intermix_fraction": [0.2, 0.25]})
    dry = subprocess.run(snakemake_cmd(changed, "-n"), cwd=wd, env=env(), capture_output=True,
                         text=True)
    assert dry.returncode == 0 and "collect" in dry.stdout
    run(snakemake_cmd(changed), wd)
    after = stamps(paths)
    redone = sorted(u for u in paths if after[u] != before[u])
    assert redone == sorted(u for u in paths if "/diffuse-" in u)
    assert (wd / "results" / "dataset.zarr" / "zarr.json").stat().st_mtime_ns != dataset_before
    # and back: a no-op change (same values) reruns nothing
    again = subprocess.run(snakemake_cmd(changed, "-n"), cwd=wd, env=env(),
                           capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr
