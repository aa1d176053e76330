"""What each site's jobs ask the scheduler for (cbedflow.site), translated by
the Slurm executor plugin's own submit-string builder, and the world-size
check of packed jobs. The real submissions on a Slurm cluster are in
test_slurm_sites.py."""

import re

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command

from cbedflow.config import validate
from cbedflow.distributed import host_plan
from cbedflow.site import WorldSizeError, check_world, job_shape


class _Res(dict):
    """Snakemake job resources: mapping and attribute access."""

    def __getattr__(self, key):
        return self[key]


class _Job:
    def __init__(self, resources, threads=1):
        self.resources = _Res(resources)
        self.threads = threads


def sbatch(resources, threads=1):
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "-A x",
              "partition": "-p batch", "workdir": "/w"}
    return get_submit_command(_Job(dict(resources, runtime=60, mem_mb=1000), threads), params)


def flags(call):
    return dict(re.findall(r"--([a-z-]+)[= ](\S+)", call))


# site, device, which job -> (nodes, tasks, gpus, cpus per task)
CASES = [
    ("frontier", "gpu", "sim", (4, 32, 32, 7)),
    ("frontier", "gpu", "train", (2, 16, 16, 7)),
    ("frontier", "cpu", "sim", (4, 32, 32, 7)),  # a GPU site: a GPU per rank all the same
    ("mycluster", "cpu", "sim", (4, 32, 0, 7)),  # CPU site: 8 ranks of 7 cores per node
    ("perlmutter", "gpu", "sim", (4, 16, 16, 32)),
    ("perlmutter", "gpu", "train", (2, 8, 8, 32)),
    ("summit", "gpu", "sim", (4, 24, 24, 7)),
    ("summit", "gpu", "train", (2, 12, 12, 7)),
    ("slurm-ci", "cpu", "sim", (1, 2, 0, 1)),
    ("local", "cpu", "train", (1, 2, 0, 1)),
]


@pytest.mark.parametrize("site, device, which, want", CASES)
def test_job_shapes_and_the_sbatch_they_give(site, device, which, want):
    if site == "mycluster":
        s = validate({"site": {"name": "mycluster", "ranks_per_job": 32, "cpus_per_rank": 7,
                               "cores_per_node": 56}})["site"]
    else:
        s = validate({"site": site})["site"]
    ranks = s["ranks_per_job"] if which == "sim" else s["train_ranks"]
    shape = job_shape(s, device, ranks)
    assert (shape.nodes, shape.ranks, shape.gpus, shape.cpus_per_rank) == want
    call = sbatch(shape.resources(), threads=ranks)  # threads must not leak into the request
    f = flags(call)
    nodes, tasks, gpus, cpus = want
    assert f["nodes"] == str(nodes) and f["ntasks"] == str(tasks)
    assert f["cpus-per-task"] == str(cpus)
    assert "ntasks-per-gpu" not in f  # tasks x GPUs would be 1,024 tasks on Frontier
    if gpus:
        assert "--gpus" not in call  # the GPUs are added by the plugin's set_gres_string
    assert "--ntasks-per-node" not in call


def test_gpu_request_is_one_per_rank():
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    s = validate({"site": "frontier"})["site"]
    shape = job_shape(s, "gpu", 32)
    assert set_gres_string(_Job(shape.resources())).strip() == "--gpus=32"
    cpu_site = dict(s, gpus_per_node=0)
    assert set_gres_string(_Job(job_shape(cpu_site, "cpu", 32).resources())).strip() == ""


def test_several_ranks_run_in_the_batch_step():
    """With `mpi` set the jobstep plugin runs the rule's own launcher in the
    batch step instead of wrapping it in a one-task srun holding every GPU."""
    s = validate({"site": "frontier"})["site"]
    assert job_shape(s, "gpu", 32).resources()["mpi"]
    assert "mpi" not in job_shape(s, "gpu", 1).resources()


def test_launcher_placeholders():
    s = validate({"site": "frontier"})["site"]
    shape = job_shape(s, "gpu", 32)
    assert shape.launcher(s["mpi_launcher"]) == \
        "srun -n 32 -c 7 --gpus-per-task=1 --gpu-bind=closest"
    s = validate({"site": "summit"})["site"]
    assert job_shape(s, "gpu", 24).launcher(s["mpi_launcher"]) == \
        "jsrun -n 24 -a1 -g1 -c7 -b packed:7"


def test_world_size_check():
    check_world(4, 4, "job j00001", "mpi_launcher")
    with pytest.raises(WorldSizeError, match=r"job j00001: this rank sees an MPI world of 1 "
                                             r"rank\(s\), expected 2: .* srun --mpi=pmi2"):
        check_world(1, 2, "job j00001", "mpi_launcher")


def test_horovod_host_plan_matches_horovodrun():
    """Slot info as horovodrun assigns it, for 2 hosts x 2 ranks (block order)."""
    ranks = [{"rank": r, "host": f"n{r // 2}", "local_rank": r % 2} for r in (3, 1, 0, 2)]
    plan = host_plan(ranks)
    assert [(p["rank"], p["hostname"], p["local_rank"], p["local_size"], p["cross_rank"],
             p["cross_size"], p["size"]) for p in plan] == [
        (0, "n0", 0, 2, 0, 2, 4), (1, "n0", 1, 2, 0, 2, 4),
        (2, "n1", 0, 2, 1, 2, 4), (3, "n1", 1, 2, 1, 2, 4)]


def test_horovod_is_used_in_one_module_only(root):
    """Only cbedflow.distributed imports Horovod: another backend is one new
    module, not a rewrite of the training loop."""
    users = sorted(p.name for p in (root / "workflow" / "cbedflow").rglob("*.py")
                   if re.search(r"^\s*(import|from)\s+horovod", p.read_text(), re.M))
    assert users == ["distributed.py"]


def test_hashing_and_job_ids_exist_once(root):
    """One short hash (storage.digest), one scheduler job id (site.scheduler_job_id)."""
    pkg = root / "workflow" / "cbedflow"
    hashing = sorted(p.name for p in pkg.rglob("*.py") if "hashlib" in p.read_text())
    job_ids = sorted(p.name for p in pkg.rglob("*.py") if "LSB_JOBID" in p.read_text())
    assert hashing == ["storage.py"] and job_ids == ["site.py"]
