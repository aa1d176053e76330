"""The tiny campaign through a real Slurm cluster (one node on this machine,
started by tests/slurm/cluster.sh): packed simulation jobs on 2 MPI ranks and
the 2-rank Horovod training run as Slurm jobs."""

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
               CBEDFLOW_TRAIN_ENV=str(train_env()), **slurm)
    r = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"),
                        "--profile", str(ROOT / "profiles" / "slurm-ci"),
                        "--configfile", str(ROOT / "config" / "config.yaml")],
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
    assert len(sim_ids) == 3  # 48 units / 16 per job
    manifests = sorted((slurm_campaign["dir"] / "results" / "simulations" / "jobs").glob("*.json"))
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
    (train_id,) = jobs["train"]
    res = slurm_campaign["dir"] / "results"
    info = json.loads((res / "models" / "rough_vs_diffuse" / "train_info.json").read_text())
    assert info["ranks"] == 2 and info["scheduler_job"] == f"SLURM_JOB_ID={train_id}"
    log = (res / "logs" / "train" / "rough_vs_diffuse.log").read_text()
    assert "hvd rank=1 size=2" in log and "hvd rank=0 size=2" in log
    m = json.loads((res / "evaluation" / "rough_vs_diffuse" / "metrics.json").read_text())
    assert m["accuracy"] >= 0.70
