"""End-to-end Snakemake runs: the tiny campaign through collect, config refusal,
and the paper-scale dry run."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args, cwd):
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [str(bindir / "snakemake"), "-s", str(ROOT / "Snakefile"), *args],
        cwd=cwd, env=env, capture_output=True, text=True,
    )


@pytest.mark.slow
def test_tiny_campaign_end_to_end(tmp_path):
    r = snakemake("--profile", str(ROOT / "profiles" / "local"),
                  "--configfile", str(ROOT / "config" / "config.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    n = cfg["structures"]["per_class"]
    ds = zarr.open_group(str(tmp_path / "results" / "dataset.zarr"), mode="r")
    assert ds.attrs["complete"] is True
    scan = cfg["simulation"]["scan"]
    assert ds["cbed"].shape[:3] == (2 * n, scan["positions_x"], scan["positions_y"])
    assert ds["cbed"].shape[3] == ds["cbed"].shape[4]  # square patterns
    assert int(ds["rough"][...].sum()) == n
    cbed = ds["cbed"][...]
    assert np.all(np.isfinite(cbed))
    total = cbed.sum(axis=(-2, -1))
    assert total.max() <= 1.0 + 1e-3 and total.min() > 0.3
    # every job logged its progress
    logs = list((tmp_path / "results" / "logs" / "simulate").rglob("*.log"))
    assert len(logs) == 2 * n
    assert all("done:" in p.read_text() for p in logs)
    # a rerun has nothing to do
    r2 = snakemake("--profile", str(ROOT / "profiles" / "local"),
                   "--configfile", str(ROOT / "config" / "config.yaml"), cwd=tmp_path)
    assert r2.returncode == 0
    assert "Nothing to be done" in r2.stdout + r2.stderr


@pytest.mark.slow
def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"simulation": {"phonons": {"configs": 3, "batch_size": 2}}}))
    r = snakemake("--cores", "1", "--configfile", str(bad), cwd=tmp_path)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "simulation.phonons.configs" in lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_paper_scale_dry_run(tmp_path):
    r = snakemake("-n", "--configfile", str(ROOT / "config" / "paper.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(counts["build_structure"]) == 1200
    assert int(counts["simulate"]) == 1200 * 5 * (64 // 8)
    assert int(counts["collect"]) == 1
