"""Packing units into batch jobs and spreading them over MPI ranks (real
mpiexec from the mpich wheel, real abTEM)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from cbedflow.campaigns import get_campaign as Campaign
from cbedflow.config import validate
from cbedflow.packing import job_ids, job_units
from conftest import ROOT

BIN = Path(sys.executable).parent


def tiny_params(out_dir, **sim):
    cfg = validate({
        "output_dir": str(out_dir),
        "structures": {"per_class": 1, "n_substrate": 1, "n_film": 2},
        "simulation": {"phonons": {"configs": 2, "batch_size": 1},
                       "scan": {"extent_cells": 1.0, "positions_x": 3, "positions_y": 2},
                       **sim},
        "crop": {"pattern_px": 32, "binning": 2},
    })
    return cfg


def run_job(params, job="j00000", units_per_job=4, ranks=1, wait=True):
    cmd = [str(BIN / "python"), "-m", "cbedflow", "simulate-job", "--params",
           json.dumps(params), "--job", job, "--units-per-job", str(units_per_job),
           "--manifest", str(Path(params["output_dir"]) / "jobs" / f"{job}.json")]
    if ranks > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(ranks)] + cmd
    env = dict(os.environ, PYTHONPATH=str(ROOT / "workflow"))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env, start_new_session=True)
    if not wait:
        return p
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    manifest = json.loads((Path(params["output_dir"]) / "jobs" / f"{job}.json").read_text())
    return manifest, out


@pytest.mark.parametrize("n_units,per_job,max_jobs", [(10000, 100, 100), (48000, 480, 100),
                                                      (48, 8, 6), (7, 3, 3)])
def test_units_pack_into_few_jobs(n_units, per_job, max_jobs):
    class C:  # a campaign with n_units units
        def units(self):
            return [(f"s{i}", "39", 0) for i in range(n_units)]

    ids = job_ids(C(), per_job)
    assert len(ids) <= max_jobs
    packed = [u for j in ids for u in job_units(C(), per_job, j)]
    assert packed == C().units()  # every unit exactly once, in order
    with pytest.raises(ValueError, match="does not exist"):
        job_units(C(), per_job, f"j{len(ids):05d}")


def test_campaign_jobs_cover_all_units(tmp_path):
    camp = Campaign(tiny_params(tmp_path))
    assert len(camp.units()) == 4
    assert [job_units(camp, 3, j) for j in job_ids(camp, 3)] == [camp.units()[:3],
                                                                 camp.units()[3:]]


@pytest.mark.slow
def test_packed_job_on_two_mpi_ranks_and_rerun_skips(tmp_path):
    params = tiny_params(tmp_path / "mpi")
    manifest, out = run_job(params, ranks=2)
    assert manifest["ranks"] == 2
    by_rank = {r: [u for u in manifest["units"] if u["rank"] == r] for r in (0, 1)}
    assert all(len(v) == 2 and all(u["status"] == "simulated" for u in v)
               for v in by_rank.values()), manifest
    assert "rank 0: 2 simulated" in out and "rank 1: 2 simulated" in out
    assert len(list((tmp_path / "mpi" / "structures").glob("*.extxyz"))) == 2
    # the rerun (a retry of the same job) simulates nothing again
    again, _ = run_job(params, ranks=2)
    assert all(u["status"].startswith("skipped") for u in again["units"])
    assert [u["checksum"] for u in again["units"]] == [u["checksum"] for u in manifest["units"]]


@pytest.mark.slow
def test_killed_job_retries_only_its_unfinished_units(tmp_path):
    ref, _ = run_job(tiny_params(tmp_path / "ref"))
    params = tiny_params(tmp_path / "killed")
    p = run_job(params, wait=False)
    sims = tmp_path / "killed" / "simulations"
    deadline = time.time() + 300
    while time.time() < deadline:
        done = [d for d in sims.rglob("b*.zarr") if (d / "zarr.json").exists()]
        if done:
            break
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    finished = {str(d) for d in sims.rglob("b*.zarr")}
    assert 1 <= len(finished) < 4
    manifest, _ = run_job(params)
    status = {u["unit"]: u["status"] for u in manifest["units"]}
    assert {u for u, s in status.items() if s.startswith("skipped")} == finished
    assert sum(s == "simulated" for s in status.values()) == 4 - len(finished)
    # same data as the uninterrupted run, bit for bit
    assert [u["checksum"] for u in manifest["units"]] == [u["checksum"] for u in ref["units"]]
    assert not list(sims.rglob(".*.tmp-*"))  # the retry removed the killed write's leftovers


@pytest.mark.slow
def test_changed_settings_recompute_complete_units(tmp_path):
    run_job(tiny_params(tmp_path / "a"))
    manifest, _ = run_job(tiny_params(tmp_path / "a", detector_max_angle_mrad=35.0))
    assert all(u["status"] == "simulated" for u in manifest["units"])


@pytest.mark.slow
def test_growing_the_campaign_recomputes_no_unit(tmp_path):
    """per_class 1 -> 2: the two old units are kept, only the new ones run."""
    small = tiny_params(tmp_path / "g")
    first, _ = run_job(small, units_per_job=4)
    big = validate(dict(small, structures=dict(small["structures"], per_class=2)))
    camp = Campaign(big)
    assert len(camp.units()) == 8
    records = []
    for j in job_ids(camp, 4):
        m, _ = run_job(big, job=j, units_per_job=4)
        records += m["units"]
    status = {u["unit"]: u["status"] for u in records}
    old = {u["unit"] for u in first["units"]}
    assert all(status[u].startswith("skipped") for u in old)
    assert sum(s == "simulated" for s in status.values()) == 4


def test_structure_files_rebuilt_when_their_settings_change(tmp_path):
    from cbedflow.campaigns.lao_sto_cbed.samples import ensure_structure, read_frame

    params = tiny_params(tmp_path)
    camp = Campaign(params)
    path = ensure_structure(camp, "step-0000")
    n_atoms = len(read_frame(path, "39"))
    mtime = path.stat().st_mtime_ns
    assert ensure_structure(camp, "step-0000").stat().st_mtime_ns == mtime  # reused
    wider = Campaign(validate(dict(params, structures=dict(params["structures"], n_film=3))))
    ensure_structure(wider, "step-0000")
    assert len(read_frame(path, "39")) > n_atoms  # rebuilt with the new geometry


def _two_thickness_params(out_dir, exit_planes=True, **structures):
    still = {el: 0.0 for el in ("Sr", "Ti", "La", "Al", "O")}
    return validate({
        "output_dir": str(out_dir),
        "structures": {"per_class": 2, "step_classes": [0, 5], "n_substrate": 1,
                       "n_film": 2, "thicknesses_A": [39.0, 78.0], **structures},
        "simulation": {"exit_planes": exit_planes,
                       "phonons": {"configs": 1, "batch_size": 1, "sigmas_A": still},
                       "scan": {"extent_cells": 1.0, "positions_x": 3, "positions_y": 2}},
        "crop": {"pattern_px": 32, "binning": 2},
    })


def test_exit_plane_units_and_their_keys(tmp_path):
    """Diffuse and flat-step structures get one series unit per batch, inner
    step classes one unit per thickness; keys follow what a unit computes."""
    from cbedflow.campaigns.lao_sto_cbed.samples import SERIES
    from cbedflow.campaigns.lao_sto_cbed.samples import unit_key

    on = _two_thickness_params(tmp_path)
    units = Campaign(on).units()
    S = f"t{SERIES}"
    assert units == [("step-0000", S, 0), ("step-0001", "t39", 0), ("step-0001", "t78", 0),
                     ("diffuse-0000", S, 0), ("diffuse-0001", S, 0)]
    off = _two_thickness_params(tmp_path, exit_planes=False)
    assert len(Campaign(off).units()) == 8
    assert f"t{SERIES}" not in {t for _, t, _ in Campaign(off).units()}
    # toggling exit planes does not recompute the per-thickness units
    assert unit_key(on, "step-0001", "39") == unit_key(off, "step-0001", "39")
    # a new thickness recomputes series units, not per-thickness ones
    more = _two_thickness_params(tmp_path, thicknesses_A=[39.0, 59.0, 78.0])
    assert unit_key(more, "step-0001", "39") == unit_key(on, "step-0001", "39")
    assert unit_key(more, "diffuse-0000", SERIES) != unit_key(on, "diffuse-0000", SERIES)
    one = _two_thickness_params(tmp_path, thicknesses_A=[39.0])
    assert len(Campaign(one).units()) == 4  # a single thickness has no series


@pytest.mark.slow
def test_exit_plane_campaign_matches_per_thickness_campaign(tmp_path):
    """simulate-job + collect with exit planes against the same campaign per
    thickness, without phonons: the flat step and the thickest diffuse sample
    are the same structures both ways, so their data must agree; the thinner
    diffuse sample is a cut with its own realised intermixing."""
    from cbedflow.collect import collect

    datasets = {}
    for mode in (True, False):
        params = _two_thickness_params(tmp_path / str(mode), exit_planes=mode)
        camp = Campaign(params)
        n = len(camp.units())
        manifest, out = run_job(params, units_per_job=n)
        assert len(manifest["units"]) == n == (5 if mode else 8)
        if mode:
            assert "with exit planes at 39.05 Å" in out
        ds = collect(camp, camp.unit_paths(), tmp_path / f"ds-{mode}.zarr", progress=lambda m: None)
        datasets[mode] = zarr.open_group(str(ds), mode="r")
    a, b = datasets[True], datasets[False]
    assert a["cbed"].shape == b["cbed"].shape and a["cbed"].shape[0] == 8
    names = a.attrs["structure_names"]
    assert names == b.attrs["structure_names"]
    for lab in ("rough", "step_k", "thickness_A", "structure_index"):
        np.testing.assert_array_equal(a[lab][...], b[lab][...])
    idx, t = a["structure_index"][...], a["thickness_A"][...]
    for i in range(8):
        name = names[idx[i]]
        if name in ("step-0000", "step-0001") or t[i] > 70:
            np.testing.assert_allclose(a["cbed"][i], b["cbed"][i], rtol=1e-5, atol=1e-8,
                                       err_msg=f"{name} at {t[i]:.2f} Å")
    thin_diffuse = [i for i in range(8) if names[idx[i]].startswith("diffuse") and t[i] < 40]
    assert len(thin_diffuse) == 2
    assert all(0.0 < a["intermix_fraction"][i] <= 0.4 for i in thin_diffuse)
