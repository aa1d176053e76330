"""PRISM against multislice for the 4D-STEM units: pattern error and cost.

    python benchmarks/prism.py --quick      # the reproduction geometry (~3 min, 2 cores)
    python benchmarks/prism.py              # + the paper geometry at 100 and 300 Å (~30 min)
    python benchmarks/prism.py --device gpu # the same on a CUDA machine with cupy

Each case simulates the same structure with the same phonon seed twice through
``cbedflow.forward.cbed4d.simulate_unit``: multislice of every probe, and PRISM
(``simulation.prism_interpolation`` = f, abTEM ``SMatrix``) on the same grid,
and prints per f:

* the probe window (cell / f) [Å];
* the relative L2 error of the recorded patterns (the whole detector), of the
  networks' input (``crop.pattern_px`` central pixels binned by ``crop.binning``,
  as the campaign's examples) and of the virtual HAADF signal;
* the wall time of both by stage (``StageTimes``): per configuration the
  potential and, for PRISM, the S-matrix (fixed costs), and the multislice or
  PRISM reduction with detection per probe; from these the estimated cost of
  the config's full unit (every probe of the scan, every configuration of a
  batch) and PRISM's speed-up there.

The multislice reference runs on the PRISM grid (a multiple of f); on the
campaign's own grid it differs only by its 7-smooth rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from cbedflow.campaigns import get_campaign  # noqa: E402
from cbedflow.campaigns.lao_sto_cbed import crop_pattern  # noqa: E402
from cbedflow.campaigns.lao_sto_cbed.structures import build_structure  # noqa: E402
from cbedflow.config import validate  # noqa: E402
from cbedflow.forward.cbed4d import SimulationSettings, StageTimes, simulate_unit  # noqa: E402

#: geometry name -> (config file, thickness [Å], interpolation factors, probes along x)
CASES = {
    "reproduce": ("reproduce.yaml", 78.0, (1, 2), 25),
    "paper": ("paper.yaml", 100.0, (2, 4), 13),
    "paper-300": ("paper.yaml", 300.0, (2, 4), 13),
}


def case_config(name: str, device: str) -> dict:
    file, thickness, _, _ = CASES[name]
    raw = yaml.safe_load((ROOT / "config" / file).read_text())
    raw["device"] = device
    raw["structures"].update(per_class=11, thicknesses_A=[thickness])
    raw.pop("output_dir", None)
    return validate(raw)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_unit(atoms, settings: SimulationSettings, seed: int, out: Path):
    stages = StageTimes()
    t0 = time.perf_counter()
    simulate_unit(atoms, settings, [seed], out, progress=lambda m: None, stages=stages)
    seconds = time.perf_counter() - t0
    g = zarr.open_group(str(out), mode="r")
    return g["cbed"][...], g["haadf"][...], seconds, stages.seconds


def bench_case(name: str, device: str, tmp: Path, factors=None) -> list[dict]:
    cfg = case_config(name, device)
    _, thickness, default_factors, n_x = CASES[name]
    camp = get_campaign(cfg)
    spec = [s for s in camp.structures if s.kind == "step" and s.step_k == 5][0]
    atoms = build_structure(spec, camp.geometry, thickness)
    base = SimulationSettings.from_config(cfg)
    full_probes = base.scan.positions_x * base.scan.positions_y
    batch = cfg["simulation"]["phonons"]["batch_size"]
    one_line = replace(base.scan, positions_x=n_x, positions_y=1)
    crop = cfg["crop"]
    # warm-up (imports, FFT plans, numba): a packed job pays it once
    run_unit(atoms, replace(base, scan=replace(one_line, positions_x=2)), 1, tmp / "warm.zarr")
    rows = []
    for f in factors or default_factors:
        prism = replace(base, scan=one_line, prism_interpolation=f)
        gpts = prism.gpts(atoms)
        cell = float(atoms.cell[0, 0])
        # multislice on the same grid: the sampling that gives exactly these gpts
        ms = replace(base, scan=one_line, sampling_A=cell / gpts[0] * (1 + 1e-9))
        assert ms.gpts(atoms) == gpts, (ms.gpts(atoms), gpts)
        ref, ref_ring, t_ms, st_ms = run_unit(atoms, ms, 7, tmp / f"{name}-ms-{f}.zarr")
        got, ring, t_pr, st_pr = run_unit(atoms, prism, 7, tmp / f"{name}-prism-{f}.zarr")
        probe_ms = st_ms["multislice+detection"] / n_x
        probe_pr = st_pr["multislice+detection"] / n_x
        fixed_pr = st_pr["potential"] + st_pr["s_matrix"]
        ms_unit = (st_ms["potential"] + probe_ms * full_probes) * batch
        pr_unit = (fixed_pr + probe_pr * full_probes) * batch
        lx, ly = crop_pattern(got, crop["pattern_px"], crop["binning"]), \
            crop_pattern(ref, crop["pattern_px"], crop["binning"])
        row = {
            "geometry": name, "thickness_A": thickness, "cell_A": cell, "gpts": list(gpts),
            "interpolation": f, "window_A": cell / f, "probes": n_x,
            "pattern_rel_l2": rel_l2(got, ref),
            "input_rel_l2": rel_l2(lx, ly),
            "haadf_rel_l2": rel_l2(ring, ref_ring),
            "total_intensity_rel_diff": float(np.abs(got.sum((-2, -1)) / ref.sum((-2, -1))
                                                     - 1).max()),
            "multislice_s": t_ms, "prism_s": t_pr,
            "multislice_stages_s": st_ms, "prism_stages_s": st_pr,
            "multislice_per_probe_s": probe_ms, "prism_per_probe_s": probe_pr,
            "prism_s_matrix_s": st_pr["s_matrix"],
            "unit_probes": full_probes, "unit_configs": batch,
            "unit_multislice_s_est": ms_unit, "unit_prism_s_est": pr_unit,
            "unit_speedup_est": ms_unit / pr_unit,
        }
        rows.append(row)
        print(f"[{name}] {thickness:.0f} Å, cell {cell:.2f} Å, grid {gpts}, f={f}: window "
              f"{cell / f:.2f} Å; rel. L2 vs multislice: patterns {row['pattern_rel_l2']:.4f}, "
              f"network input ({crop['pattern_px']} px / {crop['binning']}) "
              f"{row['input_rel_l2']:.4f}, HAADF {row['haadf_rel_l2']:.4f}; per configuration: "
              f"multislice {probe_ms * 1e3:.0f} ms/probe, PRISM S-matrix "
              f"{st_pr['s_matrix']:.1f} s + {probe_pr * 1e3:.1f} ms/probe; full unit "
              f"({full_probes} probes x {batch} configs) est. {ms_unit:.0f} s vs {pr_unit:.0f} s "
              f"= {row['unit_speedup_est']:.2f}x", flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the reproduction geometry only")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--factors", type=int, nargs="+", help="interpolation factors (default per case)")
    ap.add_argument("--out", type=Path, help="write the rows as JSON")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in (["reproduce"] if a.quick else list(CASES)):
            rows += bench_case(name, a.device, Path(tmp), a.factors)
    print(f"({time.perf_counter() - t0:.0f} s)")
    if a.out:
        a.out.write_text(json.dumps({"device": a.device, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
