"""The site profiles as a user runs them: the toy campaign (tests/toy_campaign.py:
every stage it runs is generic, the jobs are what is tested here) through
`profiles/frontier` and `profiles/perlmutter` themselves on a real Slurm
cluster (tests/slurm/cluster.sh: one node declaring 64 CPUs and 8 fake GPUs,
partitions `batch` and `regular`, feature `gpu`).

The command is the README's, with only what a user gives at such a site:
the account (SBATCH_ACCOUNT), `--sdm env-modules` (no conda here),
`--slurm-status-command squeue` (this cluster keeps no accounting) and a
one-node job size (`--config 'site={ranks_per_job: 2, ...}'`). Snakemake is
called by its path from a shell whose PATH lacks the environment. What each
job really asked for is read from the controller's own job records
(`scontrol show job`, polled while the campaign runs: no sacct here), and
each packed job's and training's ranks must form one world.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, train_env
from test_slurm import slurm  # noqa: F401 - the cluster fixture

BIN = Path(sys.executable).parent
SITE = "site={ranks_per_job: 2, train_ranks: 2, units_per_job: 8}"
TOY = ROOT / "tests" / "toy" / "config.yaml"
#: the toy's trainings (test_workflow runs the LAO/STO tiny campaign's)
MODELS = ("shape/all", "offset/all")
#: a short training: these tests are about the jobs, test_workflow about accuracy
#: (and a nested value typed through every job: history.csv has 4 epochs)
TRAIN = "train={epochs: 4}"
#: what each site's jobs must ask for at 2 ranks: partition, cpus per task, constraint
EXPECT = {"frontier": ("batch", 7, None), "perlmutter": ("regular", 32, "gpu")}


class JobRecords:
    """The latest `scontrol show job -o` record of every job, polled every
    second while the campaign runs (records outlive a job by MinJobAge only)."""

    def __init__(self, env, workdir):
        self.env, self.jobs, self._stop = env, {}, threading.Event()
        self.workdir = str(workdir)
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            r = subprocess.run(["scontrol", "show", "job", "-o"], env=self.env,
                               capture_output=True, text=True)
            for line in r.stdout.splitlines():
                rec = dict(re.findall(r"(\S+?)=(\S*)", line))
                if "JobId" in rec and rec.get("WorkDir") == self.workdir:  # this run's jobs
                    self.jobs[rec["JobId"]] = rec
            self._stop.wait(1.0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def by_rule(self, rule):
        return [j for j in self.jobs.values() if j.get("Comment", "").startswith(f"rule_{rule}")]


def run_site(slurm, site, wd, *targets):  # noqa: F811
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": os.environ.get("HOME", "/root"), "SBATCH_ACCOUNT": "cbedflow-ci",
           "CBEDFLOW_TRAIN_ENV": str(train_env()),
           "PYTHONPATH": str(ROOT / "tests"),  # the toy campaign's module
           **slurm}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), *targets,
           "--profile", str(ROOT / "profiles" / site), "--sdm", "env-modules",
           "--slurm-status-command", "squeue",
           "--configfile", str(TOY), "--config", SITE, TRAIN]
    with JobRecords(env, wd) as rec:
        r = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True, timeout=2700)
    return r, rec


def check_requests(rec, site, rule, n_jobs):
    part, cpus, constraint = EXPECT[site]
    jobs = rec.by_rule(rule)
    assert len(jobs) == n_jobs, [j.get("Comment") for j in rec.jobs.values()]
    for j in jobs:
        assert j["Partition"] == part and j["Account"] == "cbedflow-ci"
        assert j["NumNodes"] == "1" and j["NumTasks"] == "2", j
        assert j["CPUs/Task"] == str(cpus) and j["NumCPUs"] == str(2 * cpus), j
        assert j["TresPerJob"] == "gres:gpu:2", j  # one GPU per rank, not --ntasks-per-gpu
        assert j.get("NtasksPerTRES", "0") in ("0", "")  # no tasks-per-GPU geometry
        if constraint:
            assert j["Features"] == constraint, j
        assert j["JobState"] == "COMPLETED", j


def check_simulation_worlds(res, rec):
    sim_ids = {j["JobId"] for j in rec.by_rule("simulate_job")}
    for m in sorted((res / "simulations" / "jobs").glob("*.json")):
        units = json.loads(m.read_text())["units"]
        assert {u["rank"] for u in units} == {0, 1}
        assert {u["scheduler_job"].split("=")[1] for u in units} <= sim_ids
    for log in (res / "logs" / "simulate").glob("*.log"):
        assert "one MPI world of 2 rank(s)" in log.read_text()


@pytest.fixture(scope="module")
def frontier(slurm, tmp_path_factory):  # noqa: F811
    wd = tmp_path_factory.mktemp("frontier")
    r, rec = run_site(slurm, "frontier", wd)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return {"dir": wd, "records": rec, "out": r.stdout + r.stderr}


@pytest.mark.slow
def test_frontier_profile_runs_the_campaign(frontier):
    res = frontier["dir"] / "results-toy"
    rec = frontier["records"]
    check_requests(rec, "frontier", "simulate_job", 3)  # 20 units / 8 per job
    check_requests(rec, "frontier", "train", len(MODELS))
    check_simulation_worlds(res, rec)
    train_ids = {j["JobId"] for j in rec.by_rule("train")}
    for model in MODELS:
        info = json.loads((res / "models" / model / "train_info.json").read_text())
        assert info["ranks"] == 2 and info["scheduler_job"].split("=")[1] in train_ids
        log = (res / "logs" / "train" / f"{model}.log").read_text()
        assert "hvd rank=0 size=2" in log and "hvd rank=1 size=2" in log
        assert len((res / "models" / model / "history.csv").read_text().splitlines()) == 5
        assert not list((res / "models" / model).glob(".rendezvous-*"))  # cleaned up
    assert (res / "summary.json").exists()
    assert "srun -n 2 -c 7 --gpus-per-task=1 --gpu-bind=closest" in frontier["out"]


@pytest.mark.slow
def test_perlmutter_profile_runs_simulation_and_training(slurm, frontier, tmp_path):  # noqa: F811
    """Perlmutter's shape; the frontier run's finished units are reused (a unit's
    key ignores the site), so its packed jobs only check and skip them."""
    src = frontier["dir"] / "results-toy"
    dst = tmp_path / "results-toy"
    shutil.copytree(src / "simulations", dst / "simulations",
                    ignore=shutil.ignore_patterns("jobs"))
    t0 = time.time()
    r, rec = run_site(slurm, "perlmutter", tmp_path, f"results-toy/models/{MODELS[0]}/model.keras")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    check_requests(rec, "perlmutter", "simulate_job", 3)
    check_requests(rec, "perlmutter", "train", 1)
    check_simulation_worlds(dst, rec)
    for m in (dst / "simulations" / "jobs").glob("*.json"):
        assert {u["status"] for u in json.loads(m.read_text())["units"]} == {"skipped (complete)"}
    log = (dst / "logs" / "train" / f"{MODELS[0]}.log").read_text()
    assert "hvd rank=0 size=2" in log and "hvd rank=1 size=2" in log
    assert "srun -n 2 -c 32 --cpu-bind=cores --gpus-per-task=1" in r.stdout + r.stderr
    print(f"perlmutter run: {time.time() - t0:.0f} s")


@pytest.mark.slow
def test_ranks_that_are_not_one_world_refuse_to_work(slurm, tmp_path):  # noqa: F811
    """srun without the site's PMI starts independent single-rank processes:
    a packed job refuses before it simulates anything, on every rank."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **slurm)
    from cbedflow.config import validate

    params = validate({"output_dir": str(tmp_path / "results")})
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"srun --mpi=none -n 2 {sys.executable} -m cbedflow simulate-job "
        f"--params '{json.dumps(params)}' --job j00000 --units-per-job 4 --ranks 2 "
        f"--manifest {tmp_path / 'm.json'}\necho exit=$?\n")
    out = tmp_path / "job.out"
    jid = subprocess.run(["sbatch", "--parsable", "-p", "debug", "-n", "2", "-o", str(out),
                          str(script)], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    deadline = time.time() + 300
    while time.time() < deadline and "exit=" not in (out.read_text() if out.exists() else ""):
        time.sleep(1)
    text = out.read_text()
    errors = [x for x in text.splitlines() if x.startswith("error:")]
    assert len(errors) == 2, text  # each of the two lone ranks says why, once
    assert all("sees an MPI world of 1 rank(s), expected 2" in e for e in errors)
    assert "exit=0" not in text and not (tmp_path / "results" / "simulations").exists(), jid
    assert not (tmp_path / "m.json").exists()
