"""Every profile parses, previews the tiny and the paper campaign, and makes
the submissions its site expects (summit: exact bsub lines, captured from the
cluster-generic submit command with a stand-in bsub; jsrun/srun lines from the
printed shell commands)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cbedflow.campaigns import get_campaign as Campaign
from cbedflow.config import load, validate
from cbedflow.lsf import bsub_command, walltime

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROFILES = ["local", "summit", "frontier", "perlmutter", "slurm-ci"]
CLUSTER = {"summit": ("jsrun -n 24 -a1 -g1 -c7 -b packed:7", "jsrun -n 12 -a1 -g1 -c7 -b packed:7"),
           "frontier": ("srun -n 32 -c 7 --gpus-per-task=1 --gpu-bind=closest",
                        "srun -n 16 -c 7 --gpus-per-task=1 --gpu-bind=closest"),
           "perlmutter": ("srun -n 16 -c 32 --cpu-bind=cores --gpus-per-task=1",
                          "srun -n 8 -c 32 --cpu-bind=cores --gpus-per-task=1")}


def snakemake(*args, cwd, env_extra=None, wait=True):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               SBATCH_ACCOUNT="TEST123", CBEDFLOW_LSF_PROJECT="TEST123")
    env.update(env_extra or {})
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_and_site_parse(name):
    prof = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
    assert isinstance(prof, dict) and f"site={name}" in prof["config"]
    cfg = validate({"site": name})
    assert cfg["site"]["name"] == name
    assert "{ranks}" in cfg["site"]["train_launcher"]


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_leave_the_job_shape_to_the_site(name):
    """nodes/tasks/GPUs/cores per rule in a profile would override the shape the
    rules derive from site.yaml (Frontier's tasks + gpu made 1,024 tasks)."""
    prof = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
    for rule, res in (prof.get("set-resources") or {}).items():
        assert not set(res) & {"nodes", "tasks", "gpu", "gpus", "cpus_per_task",
                               "cpus_per_gpu", "tasks_per_gpu", "mpi", "slurm_extra"}, rule


@pytest.mark.slow
def test_shape_in_set_resources_is_refused(tmp_path):
    r = snakemake("-n", "--profile", str(ROOT / "profiles" / "frontier"), "--sdm", "env-modules",
                  "--configfile", str(ROOT / "config" / "config.yaml"),
                  "--set-resources", "simulate_job:tasks=32", cwd=tmp_path)
    err = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("error:")]
    assert r.returncode != 0 and len(err) == 1 and "set-resources simulate_job: tasks" in err[0]


def test_unknown_site_is_refused():
    with pytest.raises(Exception, match="'nowhere'.*local"):
        validate({"site": "nowhere"})


def _counts(out):
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M)}


@pytest.mark.slow
@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("config", ["config.yaml", "paper.yaml"])
def test_dry_run_through_profile(tmp_path, name, config):
    # conda is not on this machine: the cluster profiles deploy with it, a dry run
    # previews with no software deployment
    r = snakemake("-n", "-p", "--profile", str(ROOT / "profiles" / name), "--sdm",
                  "env-modules", "--configfile", str(ROOT / "config" / config), cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = _counts(out)
    site = validate({"site": name})["site"]
    units = len(Campaign(load(ROOT / "config" / config)).units())
    # paper: 600 diffuse + 109 flat-step structures as one exit-plane series each
    assert units == (48 if config == "config.yaml" else (709 + 491 * 5) * 8)
    assert counts["simulate_job"] == -(-units // site["units_per_job"])
    if name in CLUSTER:
        assert counts["simulate_job"] <= 100  # the sites' queued-jobs limit
        sim, train = CLUSTER[name]
        assert f"{sim} python -m cbedflow simulate-job" in out
        assert f"{train} python -m cbedflow train" in out


@pytest.mark.slow
def test_command_line_config_keeps_the_profile_site(tmp_path):
    """--config replaces a profile's `config:` list; the site still comes from
    the profile, nested values are typed, and a site mapping overrides it."""
    r = snakemake("-n", "-p", "--profile", str(ROOT / "profiles" / "frontier"), "--sdm",
                  "env-modules", "--configfile", str(ROOT / "config" / "paper.yaml"),
                  "--config", "train={epochs: 5, learning_rate: 0.02}",
                  "site={ranks_per_job: 8}", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "srun -n 8 -c 7 --gpus-per-task=1 --gpu-bind=closest python -m cbedflow " \
           "simulate-job" in out
    assert "--ranks 8 " in out and "srun -n 16 -c 7" in out  # training: the profile's ranks
    assert '"epochs": 5' in out and '"learning_rate": 0.02' in out


@pytest.mark.slow
def test_ctr_paper_campaign_previews_on_frontier(tmp_path):
    """The CTR campaign at the paper's scale (1e5 films): a dry run through
    the Frontier profile plans the shards in packed jobs and one training."""
    r = snakemake("-n", "--profile", str(ROOT / "profiles" / "frontier"), "--sdm",
                  "env-modules", "--configfile", str(ROOT / "config" / "ctr-paper.yaml"),
                  cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = _counts(out)
    site = validate({"site": "frontier"})["site"]
    assert counts["simulate_job"] == -(-50 // site["units_per_job"])  # 1e5 / 2000 per shard
    assert counts["train"] == 1 and counts["readout"] == 1 and counts["collect"] == 1


def test_ctr_thickness_variants_preview_one_model_per_thickness(tmp_path):
    """config/ctr-thickness.yaml (the paper's Fig. 3d): films of 4, 12, 16
    and 24 layers, one U-Net per thickness (models t4L ... t24L), each with
    its baseline, readout and noisy-test evaluation."""
    r = snakemake("-n", "--profile", str(ROOT / "profiles" / "frontier"), "--sdm",
                  "env-modules", "--configfile", str(ROOT / "config" / "ctr-thickness.yaml"),
                  cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = _counts(out)
    for rule in ("train", "evaluate", "baseline", "readout", "evaluate_noisy", "readout_noisy"):
        assert counts[rule] == 4, (rule, counts)
    for model in ("t4L", "t12L", "t16L", "t24L"):
        assert f"models/film_field/{model}/model.keras" in out


@pytest.mark.slow
def test_profile_config_errors_are_one_line(tmp_path):
    r = snakemake("-n", "--profile", str(ROOT / "profiles" / "frontier"), "--sdm", "env-modules",
                  "--configfile", str(ROOT / "config" / "config.yaml"), "--config",
                  "split={validation: 0.5, test: 0.5}", cwd=tmp_path)
    assert r.returncode != 0
    err = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "config key 'split'" in err[0] and "Traceback" not in r.stderr


def test_bsub_line():
    props = {"rule": "simulate_job", "jobid": 7,
             "resources": {"runtime": 125, "nodes": 4, "tasks": 24}}
    cmd = bsub_command(props, "/tmp/job.sh", env={"CBEDFLOW_LSF_PROJECT": "MAT123"})
    assert cmd == ["bsub", "-P", "MAT123", "-W", "02:05", "-nnodes", "4", "-alloc_flags",
                   "gpumps", "-J", "cbedflow-simulate_job-7",
                   "-o", "logs/lsf/simulate_job-7.%J.out", "-e", "logs/lsf/simulate_job-7.%J.err",
                   "/tmp/job.sh"]
    assert "-R" not in cmd  # Summit refuses -R
    assert walltime(59) == "00:59" and walltime(600) == "10:00"
    with pytest.raises(SystemExit, match="CBEDFLOW_LSF_PROJECT"):
        bsub_command(props, "/tmp/job.sh", env={})


FAKE_BSUB = """#!/usr/bin/env python3
import json, os, sys
rec = os.environ["FAKE_LSF_RECORD"]
script = open(sys.argv[-1]).read()
with open(rec, "a") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:], "jobscript": script}) + "\\n")
n = sum(1 for _ in open(rec))
print(f"Job <{1000 + n}> is submitted to queue <batch>.")
"""
FAKE_BJOBS = "#!/bin/sh\necho PEND\n"


@pytest.mark.slow
def test_summit_submissions_captured(tmp_path):
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "bsub").write_text(FAKE_BSUB)
    (fake / "bjobs").write_text(FAKE_BJOBS)
    for f in fake.iterdir():
        f.chmod(0o755)
    record = tmp_path / "bsub.jsonl"
    env = {"PATH": f"{fake}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
           "FAKE_LSF_RECORD": str(record)}
    p = snakemake("--profile", str(ROOT / "profiles" / "summit"), "--sdm", "env-modules",
                  "--configfile", str(ROOT / "config" / "paper.yaml"), "--jobs", "3",
                  "--max-jobs-per-second", "50", cwd=tmp_path, env_extra=env, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if record.exists() and len(record.read_text().splitlines()) >= 3:
            break
        time.sleep(0.5)
    os.killpg(p.pid, signal.SIGKILL)  # stop before the (stand-in) jobs would be polled
    out, _ = p.communicate(timeout=60)
    subs = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(subs) == 3, out[-3000:]
    for s in subs:
        argv = s["argv"]
        jid = re.search(r"cbedflow-simulate_job-(\d+)", " ".join(argv)).group(1)
        assert argv == ["-P", "TEST123", "-W", "02:00", "-nnodes", "4", "-alloc_flags",
                        "gpumps", "-J", f"cbedflow-simulate_job-{jid}",
                        "-o", f"logs/lsf/simulate_job-{jid}.%J.out",
                        "-e", f"logs/lsf/simulate_job-{jid}.%J.err", argv[-1]]
        assert "simulate_job" in s["jobscript"]


def test_rules_hold_no_resource_literals():
    """Memory and walltime come from the config's resources section."""
    for f in (ROOT / "workflow" / "rules").glob("*.smk"):
        assert not re.search(r"(mem_mb|runtime)=\d", f.read_text()), f.name


@pytest.mark.slow
def test_rule_resources_from_the_config(tmp_path):
    r = snakemake("-n", "-p", "--profile", str(ROOT / "profiles" / "local"), "--configfile",
                  str(ROOT / "config" / "config.yaml"), "--config",
                  "resources={train: {runtime_min: 99}}", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "--walltime-min 99 " in out and "--walltime-min 240" not in out


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["frontier", "summit"])
@pytest.mark.parametrize("config,shards,tasks", [("abf-paper.yaml", 2002, 3),
                                                 ("bfo-paper.yaml", 1000, 3)])
def test_image_campaigns_at_paper_scale_preview_in_packed_jobs(tmp_path, profile, config,
                                                               shards, tasks):
    """The ABF tilt campaign (~1e5 images in 2,002 shards) and the BiFeO3
    polarization campaign (40,000 images in 1,000 shards) at their papers'
    scale plan packed simulation jobs and one training per task on a Slurm
    and an LSF site."""
    r = snakemake("-n", "--profile", str(ROOT / "profiles" / profile), "--sdm",
                  "env-modules", "--configfile", str(ROOT / "config" / config),
                  cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = _counts(out)
    site = validate({"site": profile})["site"]
    assert counts["simulate_job"] == -(-shards // site["units_per_job"])
    assert counts["train"] == tasks and counts["collect"] == 1


@pytest.mark.slow
def test_reproduce_gpu_previews_on_frontier(tmp_path):
    """config/reproduce-gpu.yaml (issue #15: the paper's 100-200 Å, 0.06 Å, 16
    configurations): the flat and diffuse structures as one exit-plane series
    each, the inner steps per thickness, packed into GPU jobs; one step-position
    model per thickness."""
    cfg = load(ROOT / "config" / "reproduce-gpu.yaml")
    assert cfg["device"] == "gpu" and cfg["simulation"]["sampling_A"] == 0.06
    assert cfg["simulation"]["phonons"]["configs"] >= 16
    assert min(cfg["structures"]["thicknesses_A"]) >= 100
    r = snakemake("-n", "--profile", str(ROOT / "profiles" / "frontier"), "--sdm",
                  "env-modules", "--configfile", str(ROOT / "config" / "reproduce-gpu.yaml"),
                  cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = _counts(out)
    units = Campaign(cfg).units()
    # 286 diffuse + 2 x 26 flat steps in series, 9 x 26 inner steps x 3 thicknesses; 2 batches
    assert len(units) == ((286 + 52) + 234 * 3) * 2
    site = validate({"site": "frontier"})["site"]
    assert counts["simulate_job"] == -(-len(units) // site["units_per_job"])
    assert counts["train"] == 3 + 3  # three "all" tasks + step position per thickness
