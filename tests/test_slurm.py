"""Campaigns through a real Slurm cluster (one node on this machine, started
by tests/slurm/cluster.sh): the toy campaign's packed simulation jobs on 2 MPI
ranks and its 2-rank Horovod trainings as Slurm jobs (every stage is generic:
the toy covers them in minutes; the LAO/STO tiny campaign runs end to end in
test_workflow), and faults under Slurm on a small LAO/STO campaign."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, train_env

BIN = Path(sys.executable).parent
SCRIPT = ROOT / "tests" / "slurm" / "cluster.sh"
#: the toy campaign (tests/toy_campaign.py, imported from tests/ on PYTHONPATH,
#: which every Slurm job inherits); 20 units (10 x 2 batches), 8 per packed job
TOY = ROOT / "tests" / "toy" / "config.yaml"
TOY_SITE = "site={units_per_job: 8}"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    state = Path(os.environ.get("CBEDFLOW_SLURM_DIR", "/tmp/cbedflow-slurm"))
    pids = [state / "run" / f"{d}.pid" for d in ("munged", "slurmctld", "slurmd")]
    running_before = all(p.exists() for p in pids)
    r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True)
    assert r.returncode == 0, f"could not start the Slurm cluster:\n{r.stdout}\n{r.stderr}"
    conf = re.search(r"SLURM_CONF=(\S+)", r.stdout).group(1)
    yield {"SLURM_CONF": conf}
    if not running_before:  # stop only what this fixture started
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True)


@pytest.fixture(scope="module")
def slurm_campaign(slurm, tmp_path_factory):
    wd = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               CBEDFLOW_TRAIN_ENV=str(train_env()), PYTHONPATH=str(ROOT / "tests"), **slurm)
    r = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"),
                        "--profile", str(ROOT / "profiles" / "slurm-ci"),
                        "--configfile", str(TOY), "--config", TOY_SITE],
                       cwd=wd, env=env, capture_output=True, text=True, timeout=2400)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    ctld_log = Path(slurm["SLURM_CONF"]).parent / "log" / "slurmctld.log"
    return {"dir": wd, "out": out, "env": env, "ctld_log": ctld_log.read_text()}


def _submitted(out):
    """{snakemake rule: [slurm job ids]} from Snakemake's log."""
    got = {}
    for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: .*?slurm_logs/rule_(\w+)/",
                         out):
        got.setdefault(m.group(2), []).append(m.group(1))
    return got


@pytest.mark.slow
def test_simulations_ran_as_slurm_jobs_on_two_ranks(slurm_campaign):
    jobs = _submitted(slurm_campaign["out"])
    sim_ids = jobs.get("simulate_job", [])
    assert len(sim_ids) == 3  # 20 units / 8 per job
    manifests = sorted((slurm_campaign["dir"] / "results-toy" / "simulations" / "jobs")
                       .glob("*.json"))
    assert len(manifests) == 3
    seen = set()
    for m in manifests:
        units = json.loads(m.read_text())["units"]
        assert {u["rank"] for u in units} == {0, 1}  # both MPI ranks simulated units
        (sched,) = {u["scheduler_job"] for u in units}
        jid = sched.split("=")[1]
        assert sched.startswith("SLURM_JOB_ID=") and jid in sim_ids
        seen.add(jid)
    assert seen == set(sim_ids)
    for jid in sim_ids:  # and slurmctld saw them finish
        assert re.search(rf"JobId={jid} .*(done|WEXITSTATUS 0)", slurm_campaign["ctld_log"])


@pytest.mark.slow
def test_training_ran_as_slurm_job(slurm_campaign):
    jobs = _submitted(slurm_campaign["out"])
    train_ids = jobs["train"]
    assert len(train_ids) == 2  # the toy's shape (classification) and offset (regression)
    res = slurm_campaign["dir"] / "results-toy"
    for task in ("shape", "offset"):
        info = json.loads((res / "models" / task / "all" / "train_info.json").read_text())
        assert info["ranks"] == 2 and info["scheduler_job"].split("=")[1] in train_ids
        log = (res / "logs" / "train" / task / "all.log").read_text()
        assert "hvd rank=1 size=2" in log and "hvd rank=0 size=2" in log
    m = json.loads((res / "evaluation" / "shape" / "all" / "metrics.json").read_text())
    assert m["accuracy"] >= 0.70
    assert (res / "summary.json").exists()


# --- faults under Slurm: scancel of a running simulation job, node DRAIN/RESUME ----------

from test_faults import dataset_digest, reference, stamps, units, write_config  # noqa: E402,F401


def _squeue(env):
    r = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k"], env=env, capture_output=True,
                       text=True)
    return [line.split("|") for line in r.stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_scancel_and_drain_mid_campaign_lose_nothing(slurm, reference, tmp_path):
    """A running simulation job is cancelled (scancel) and the node is drained
    and resumed while the campaign runs: Snakemake's retries finish it and the
    dataset is bit-identical to an uninterrupted run."""
    import time

    config = write_config(tmp_path)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **slurm)
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], env=env, capture_output=True,
                          text=True).stdout.split()[0]
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "results/dataset.zarr",
           "--executor", "slurm",
           "--jobs", "4", "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-no-account",
           "--max-status-checks-per-second", "2", "--retries", "2", "--latency-wait", "10",
           "--default-resources", "slurm_partition=debug", "runtime=30", "mem_mb=2000",
           "cpus_per_task=1", "--configfile", str(config)]
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    cancelled, drained = None, False
    deadline = time.time() + 600
    try:
        while time.time() < deadline and driver.poll() is None:
            running = [j for j, state, comment in _squeue(env)
                       if state == "RUNNING" and comment.startswith("rule_simulate_job")]
            if cancelled is None and running:
                time.sleep(1.0)  # let it start simulating
                cancelled = running[0]
                subprocess.run(["scancel", cancelled], env=env, check=True)
                subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain",
                                "reason=cbedflow-fault-test"], env=env, check=True)
                drained = True
                time.sleep(8)  # jobs pend while the node drains
                pending = [j for j, state, _ in _squeue(env) if state == "PENDING"]
                subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"],
                               env=env, check=True)
                drained = False
                assert pending, "no job was held back by the drained node"
            time.sleep(0.5)
        out, _ = driver.communicate(timeout=600)
    finally:
        if drained:
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], env=env)
        if driver.poll() is None:
            driver.kill()
    assert cancelled is not None, out[-3000:]
    assert driver.returncode == 0, out[-5000:]
    assert re.search(rf"{cancelled}.*(CANCELLED|failed)|Error in rule simulate_job", out), \
        out[-3000:]
    assert len(stamps(units(tmp_path, config))) == 16
    assert dataset_digest(tmp_path) == reference["digest"]
