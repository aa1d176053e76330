"""IBM LSF submission for Summit through Snakemake's cluster-generic executor.

Summit's default scheduler mode takes ``bsub -nnodes N`` and refuses ``-R``,
which Snakemake's LSF executor plugin always adds (rusage/span), so the summit
profile submits with ``cbedflow lsf-submit`` and polls with
``cbedflow lsf-status``. Hand-written because no plugin writes Summit's
``-nnodes``/``-alloc_flags`` form.

Site values come from the environment (documented in profiles/summit):
``CBEDFLOW_LSF_PROJECT`` (``-P``, required), ``CBEDFLOW_LSF_ALLOC_FLAGS``
(default ``gpumps``), ``CBEDFLOW_LSF_QUEUE`` (optional ``-q``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path


def job_properties(jobscript: str | Path) -> dict:
    """The job properties Snakemake writes into a cluster jobscript."""
    for line in Path(jobscript).read_text().splitlines():
        if line.startswith("# properties = "):
            return json.loads(line[len("# properties = "):])
    raise ValueError(f"{jobscript}: no '# properties = ' line (not a Snakemake jobscript?)")


def walltime(minutes: int) -> str:
    """LSF ``-W`` value ``hh:mm`` from minutes."""
    minutes = max(1, int(minutes))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def bsub_command(props: dict, jobscript: str, env: dict | None = None) -> list[str]:
    """The ``bsub`` argv for one Snakemake job on Summit."""
    env = os.environ if env is None else env
    project = env.get("CBEDFLOW_LSF_PROJECT")
    if not project:
        raise SystemExit("error: CBEDFLOW_LSF_PROJECT is not set; export your Summit "
                         "allocation, e.g. CBEDFLOW_LSF_PROJECT=ABC123 (bsub -P)")
    res = props.get("resources", {})
    name = props.get("rule") or props.get("groupid") or "job"
    jobid = props.get("jobid", "0")
    logdir = env.get("CBEDFLOW_LSF_LOGDIR", "logs/lsf")
    cmd = ["bsub", "-P", project, "-W", walltime(res.get("runtime", 60)),
           "-nnodes", str(max(1, int(res.get("nodes", 1)))),
           "-alloc_flags", env.get("CBEDFLOW_LSF_ALLOC_FLAGS", "gpumps"),
           "-J", f"cbedflow-{name}-{jobid}",
           "-o", f"{logdir}/{name}-{jobid}.%J.out", "-e", f"{logdir}/{name}-{jobid}.%J.err"]
    if env.get("CBEDFLOW_LSF_QUEUE"):
        cmd += ["-q", env["CBEDFLOW_LSF_QUEUE"]]
    return cmd + [jobscript]


def submit(argv: list[str]) -> int:
    """``cbedflow lsf-submit JOBSCRIPT``: submit and print the LSF job id."""
    if not argv:
        raise SystemExit("usage: cbedflow lsf-submit JOBSCRIPT")
    jobscript = argv[-1]
    cmd = bsub_command(job_properties(jobscript), jobscript)
    Path(os.environ.get("CBEDFLOW_LSF_LOGDIR", "logs/lsf")).mkdir(parents=True, exist_ok=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(f"{shlex.join(cmd)} failed: {out.stderr}")
        return out.returncode
    m = re.search(r"Job <(\d+)>", out.stdout)
    if not m:
        sys.stderr.write(f"unexpected bsub answer: {out.stdout}")
        return 1
    print(m.group(1))
    return 0


#: LSF job states -> what cluster-generic expects
_STATES = {"DONE": "success", "EXIT": "failed", "ZOMBI": "failed",
           "PEND": "running", "RUN": "running", "PSUSP": "running", "USUSP": "running",
           "SSUSP": "running", "WAIT": "running", "PROV": "running"}


def status(argv: list[str]) -> int:
    """``cbedflow lsf-status JOBID``: print running, success or failed."""
    if not argv:
        raise SystemExit("usage: cbedflow lsf-status JOBID")
    out = subprocess.run(["bjobs", "-noheader", "-o", "stat", argv[0]],
                         capture_output=True, text=True)
    state = out.stdout.strip().split()[0] if out.stdout.strip() else ""
    print(_STATES.get(state, "running" if out.returncode == 0 else "failed"))
    return 0
