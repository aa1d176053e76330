"""How the campaign scales in Snakemake: dry-run time of the paper config and of
a 10x campaign, and the batch jobs each profile submits.

    .venv/simulate/bin/python benchmarks/dag_scale.py [--quick]

Prints one table; figures go to the README (section "Scale"). Not a test:
timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from cbedflow.campaigns import get_campaign as Campaign  # noqa: E402
from cbedflow.config import validate  # noqa: E402
from cbedflow.packing import job_ids  # noqa: E402

PROFILES = ["local", "summit", "frontier", "perlmutter", "slurm-ci"]


def dry_run(profile: str, configfile: Path, cwd: Path) -> tuple[float, dict]:
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               SBATCH_ACCOUNT="X", CBEDFLOW_LSF_PROJECT="X")
    t0 = time.perf_counter()
    r = subprocess.run([str(bindir / "snakemake"), "-n", "-s", str(ROOT / "Snakefile"),
                        "--profile", str(ROOT / "profiles" / profile), "--sdm", "env-modules",
                        "--configfile", str(configfile)],
                       cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M)}
    return dt, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="paper config only, two profiles")
    args = ap.parse_args()
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    ten_x = dict(paper, structures=dict(paper["structures"],
                                        per_class=10 * paper["structures"]["per_class"]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "tenx.yaml").write_text(yaml.safe_dump(ten_x))
        campaigns = [("paper", ROOT / "config" / "paper.yaml", paper)]
        if not args.quick:
            campaigns.append(("paper x10", tmp / "tenx.yaml", ten_x))
        profiles = ["local", "summit"] if args.quick else PROFILES
        print(f"{'campaign':<10} {'structures x thicknesses':>24} {'units':>8} "
              f"{'profile':<11} {'batch jobs':>10} {'dry run [s]':>11}")
        for name, path, raw in campaigns:
            camp = Campaign(validate(raw))
            n_units = len(camp.units())
            n_struct = len(camp.structures) * len(camp.thicknesses)
            for prof in profiles:
                dt, counts = dry_run(prof, path, tmp)
                print(f"{name:<10} {n_struct:>24} {n_units:>8} {prof:<11} "
                      f"{counts.get('simulate_job', 0):>10} {dt:>11.1f}")
        print("\njobs for 10,000 units per profile (units_per_job from profiles/*/site.yaml):")
        for prof in PROFILES:
            per_job = validate({"site": prof})["site"]["units_per_job"]

            class C:
                def units(self):
                    return range(10_000)
            print(f"  {prof:<11} {per_job:>4} units/job -> {len(job_ids(C(), per_job))} jobs")


if __name__ == "__main__":
    main()
