"""Simulation and input-pipeline performance, printed as ratios.

    python benchmarks/simulation.py --quick          # < 2 minutes on 2 cores
    python benchmarks/simulation.py                  # the figures in docs/performance.md

Measures, in one run on one machine:

1. a simulation unit's wall time (``cbedflow.forward.cbed4d.simulate_unit``) against
   the bare-FFT floor of the same multislice: one forward and one inverse 2D
   FFT per slice per probe per frozen-phonon configuration, on the same grid,
   with the same library (pyfftw, FFTW_ESTIMATE, as abTEM) and threads, batched
   as abTEM batches probes (one scan row); and broken down by stage (a second
   run with ``StageTimes``: potential, propagation, detection, accumulation,
   host copy, write; propagation and detection are one abTEM call, split by
   the detectors' time on as many random exit waves measured apart);
2. the campaign's thickness-series unit (one propagation, abTEM exit planes,
   ``simulate_unit(..., series=...)``) against the thickest sample alone and
   against one unit per thickness;
3. a unit's peak resident memory (a fresh process) against the size of the
   array it writes, also net of the interpreter + abTEM baseline;
4. samples per second of the training input pipeline (zarr through tf.data,
   ``cbedflow.learn.data.zarr_dataset`` without cache) against the same tensors held
   in memory (training environment, ``CBEDFLOW_TRAIN_ENV`` or .venv/train).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from cbedflow.campaigns import get_campaign as Campaign  # noqa: E402
from cbedflow.config import validate  # noqa: E402
from cbedflow.forward.cbed4d import (  # noqa: E402
    WAVE_BUDGET_BYTES,
    SimulationSettings,
    StageTimes,
    probes_per_call,
    simulate_unit,
    unit_detectors,
    unit_seeds,
)
from cbedflow.campaigns.lao_sto_cbed.structures import build_structure  # noqa: E402


def config(quick: bool, thickness_A: float, configs: int, positions_y: int = 4,
           device: str = "cpu") -> dict:
    return validate({
        "device": device,
        "structures": {"per_class": 1, "n_substrate": 2, "n_film": 2,
                       "thicknesses_A": [thickness_A]},
        "simulation": {"phonons": {"configs": configs, "batch_size": configs},
                       "scan": {"extent_cells": 3.0, "positions_x": 13,
                                "positions_y": positions_y}},
    })


def paper_unit_config(thickness_A: float, device: str) -> dict:
    """config/paper.yaml reduced to one structure per class at one thickness:
    a paper-scale unit (525 x 525 grid, 13 x 123 probes, 8 configurations,
    341 x 341 detector pixels)."""
    import yaml

    raw = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    raw["device"] = device
    raw["structures"].update(per_class=1, thicknesses_A=[thickness_A])
    return validate(raw)


def structure(cfg: dict, thickness_A: float):
    camp = Campaign(cfg)
    spec = [s for s in camp.structures if s.kind == "step"][0]
    return build_structure(spec, camp.geometry, thickness_A)


def fft_floor_s(gpts, batch: int, ffts: int, threads: int) -> float:
    """Seconds for ``ffts`` forward+inverse pairs of a (batch, *gpts) complex64 stack."""
    import pyfftw

    a = pyfftw.empty_aligned((batch,) + tuple(gpts), dtype="complex64")
    a[...] = np.random.default_rng(0).random(a.shape)
    fwd = pyfftw.FFTW(a, a, axes=(-2, -1), direction="FFTW_FORWARD",
                      flags=("FFTW_ESTIMATE",), threads=threads)
    bwd = pyfftw.FFTW(a, a, axes=(-2, -1), direction="FFTW_BACKWARD",
                      flags=("FFTW_ESTIMATE",), threads=threads)
    fwd()
    bwd()
    t0 = time.perf_counter()
    reps = 0
    while reps < min(ffts, 200) and (reps < 3 or time.perf_counter() - t0 < 10.0):
        fwd()
        bwd()
        reps += 1
    return (time.perf_counter() - t0) / reps * ffts


def gpu_fft_floor_s(gpts, batch: int, ffts: int) -> float:
    """As :func:`fft_floor_s` with cupy's cuFFT (what abTEM uses on ``gpu``)."""
    import cupy as cp

    a = (cp.random.default_rng(0).random((batch,) + tuple(gpts), dtype=cp.float32)
         .astype(cp.complex64))
    for _ in range(3):  # plan creation and kernel loading
        a = cp.fft.ifft2(cp.fft.fft2(a))
    cp.cuda.Device().synchronize()
    reps = max(5, min(ffts, 200))
    t0 = time.perf_counter()
    for _ in range(reps):
        a = cp.fft.ifft2(cp.fft.fft2(a))
    cp.cuda.Device().synchronize()
    return (time.perf_counter() - t0) / reps * ffts


def _sync(device: str) -> None:
    if device == "gpu":
        import cupy as cp

        cp.cuda.Device().synchronize()


def bench_job(quick: bool, thickness_A: float, configs: int, device: str = "cpu",
              cfg: dict | None = None) -> dict:
    cfg = cfg or config(quick, thickness_A, configs, device=device)
    atoms = structure(cfg, thickness_A)
    settings = SimulationSettings.from_config(cfg)
    gpts = settings.gpts(atoms)
    n_slices = int(np.ceil(atoms.cell[2, 2] / settings.slice_thickness_A - 1e-9))
    scan = cfg["simulation"]["scan"]
    import abtem

    with tempfile.TemporaryDirectory() as tmp:
        # a packed job simulates many units in one process: time a unit after
        # the first (imports, FFTW plans and numba compilation are paid once)
        simulate_unit(atoms, settings, unit_seeds(2, "warm-up", 1, 0, 1),
                      Path(tmp) / "w.zarr", progress=lambda m: None)
        t0 = time.perf_counter()
        simulate_unit(atoms, settings, unit_seeds(1, "bench", 1, 0, configs),
                      Path(tmp) / "u.zarr", progress=lambda m: None)
        wall = time.perf_counter() - t0
        # the same unit again, timed stage by stage (each stage waits for
        # the device, so the sum can exceed the untimed wall time a little)
        stages = StageTimes(sync=lambda: _sync(device))
        t0 = time.perf_counter()
        simulate_unit(atoms, settings, unit_seeds(1, "bench", 1, 0, configs),
                      Path(tmp) / "s.zarr", progress=lambda m: None, stages=stages)
        staged_wall = time.perf_counter() - t0
        import zarr

        shape = zarr.open_group(str(Path(tmp) / "u.zarr"), mode="r")["cbed"].shape
    t0 = time.perf_counter()
    for c in range(configs):
        abtem.Potential(atoms, gpts=gpts, slice_thickness=settings.slice_thickness_A,
                        parametrization=settings.parametrization,
                        projection="infinite", device=device).build(lazy=False)
    _sync(device)
    potential = time.perf_counter() - t0
    n_probes = scan["positions_x"] * scan["positions_y"]
    detection = detection_s(settings, atoms, n_probes * configs)
    batch = min(n_probes, 64)
    ffts = n_slices * -(-n_probes // batch) * configs
    cpu_floor = fft_floor_s(gpts, batch, ffts, settings.fft_threads)
    floor = gpu_fft_floor_s(gpts, batch, ffts) if device == "gpu" else cpu_floor
    extra = {"cpu_fft_floor_s": round(cpu_floor, 2),
             "speedup_vs_cpu_floor": round(cpu_floor / wall, 1)} if device == "gpu" else {}
    return {"device": device, "thickness_A": thickness_A, "configs": configs,
            "gpts": list(gpts), "slices": n_slices, "probes": n_probes,
            "detector_px": list(shape[-2:]), **extra,
            "wall_s": round(wall, 2), "fft_floor_s": round(floor, 2),
            "potential_build_s": round(potential, 2),
            "ratio": round(wall / floor, 2),
            "ratio_without_potential": round((wall - potential) / floor, 2),
            "breakdown": breakdown(stages.seconds, detection, staged_wall, floor)}


def detection_s(settings: SimulationSettings, atoms, n_waves: int) -> float:
    """Seconds for the unit's two detectors (the pixelated detector's FFT,
    |.|^2 and crop, and the annular integral) on ``n_waves`` exit waves of
    its grid, measured on blocks of random waves as large as the unit's."""
    import abtem

    gpts = settings.gpts(atoms)
    per_call = probes_per_call(n_waves, gpts, WAVE_BUDGET_BYTES[settings.device])
    rng = np.random.default_rng(0)
    arr = (rng.random((per_call,) + tuple(gpts), dtype=np.float32)
           + 1j * rng.random((per_call,) + tuple(gpts), dtype=np.float32)).astype(np.complex64)
    if settings.device == "gpu":
        import cupy as cp

        arr = cp.asarray(arr)
    waves = abtem.Waves(arr, energy=settings.energy_kV * 1e3,
                        extent=(float(atoms.cell[0, 0]), float(atoms.cell[1, 1])),
                        ensemble_axes_metadata=[abtem.core.axes.UnknownAxis()])
    detectors = unit_detectors(settings, atoms)
    for d in detectors:  # warm-up: FFT plans, kernels
        d.detect(waves)
    _sync(settings.device)
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or (time.perf_counter() - t0 < 2.0 and reps < 50):
        for d in detectors:
            d.detect(waves)
        reps += 1
    _sync(settings.device)
    return (time.perf_counter() - t0) / reps / per_call * n_waves


def breakdown(seconds: dict, detection: float, wall: float, floor: float) -> dict:
    """The unit's stages [s] and as multiples of the FFT floor; multislice and
    detection (one abTEM call) split by the detection measured apart."""
    out = {k: round(v, 3) for k, v in seconds.items()}
    both = seconds.get("multislice+detection", 0.0)
    out["detection_measured_apart"] = round(min(detection, both), 3)
    out["propagation"] = round(both - min(detection, both), 3)
    out["other"] = round(wall - sum(seconds.values()), 3)
    out["wall"] = round(wall, 3)
    out["over_floor"] = {k: round(v / floor, 2) for k, v in out.items()
                         if isinstance(v, float)}
    return out


def bench_thickness_series(quick: bool, thicknesses_A: list[float],
                           device: str = "cpu", paper: bool = False) -> dict:
    """The campaign's series unit (``simulate_unit`` with exit planes, a
    diffuse structure cut at every thickness, 2 configurations) against the
    thickest sample alone and against one unit per thickness. ``paper``: the
    paper-scale geometry, probes and detector (:func:`paper_unit_config`)."""
    from cbedflow.campaigns.lao_sto_cbed.structures import build_series

    if paper:
        cfg = paper_unit_config(max(thicknesses_A), device)
        cfg["simulation"]["phonons"].update(configs=2, batch_size=2)
    else:
        cfg = config(quick, max(thicknesses_A), 2, device=device)
    settings = SimulationSettings.from_config(cfg)
    camp = Campaign(cfg)
    spec = [s for s in camp.structures if s.kind == "diffuse"][0]
    frames = build_series(spec, camp.geometry, thicknesses_A)
    seeds = unit_seeds(1, "series", 1, 0, 2)

    def run(atoms, series=None):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            simulate_unit(atoms, settings, seeds, Path(tmp) / "u.zarr", series=series,
                          progress=lambda m: None)
            return time.perf_counter() - t0

    run(frames[0])  # warm-up: imports, FFT plans
    t_thick = run(frames[-1])
    t_series = run(frames[-1], series=frames[:-1])
    t_separate = sum(run(f) for f in frames)
    return {"device": device, "thicknesses_A": sorted(thicknesses_A), "paper_scale": paper,
            "probes": len(settings.scan.positions(frames[-1]).reshape(-1, 2)),
            "configs": 2, "thickest_alone_s": round(t_thick, 2),
            "series_one_propagation_s": round(t_series, 2),
            "separate_runs_s": round(t_separate, 2),
            "series_vs_thickest": round(t_series / t_thick, 2),
            "series_vs_separate": round(t_series / t_separate, 2)}


def bench_gpu_agreement() -> dict:
    """The same thickness-series unit (39 and 59 Å exit planes, 2
    configurations, same seeds) on cupy and on the CPU: the largest pattern-pixel difference relative to the largest pixel,
    and the relative difference of the total intensity."""
    import zarr

    from cbedflow.campaigns.lao_sto_cbed.structures import build_series

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for device in ("cpu", "gpu"):
            cfg = config(True, 59.0, 2, device=device)
            camp = Campaign(cfg)
            spec = [s for s in camp.structures if s.kind == "diffuse"][0]
            frames = build_series(spec, camp.geometry, [39.0, 59.0])
            simulate_unit(frames[-1], SimulationSettings.from_config(cfg),
                          unit_seeds(1, "agree", 1, 0, 2), Path(tmp) / f"{device}.zarr",
                          series=frames[:-1], progress=lambda m: None)
            out[device] = zarr.open_group(str(Path(tmp) / f"{device}.zarr"), mode="r")["cbed"][...]
    a, b = out["cpu"].astype(np.float64), out["gpu"].astype(np.float64)
    return {"shape": list(a.shape),
            "max_abs_diff_over_max": float(np.abs(a - b).max() / np.abs(a).max()),
            "total_rel_diff": float(abs(a.sum() - b.sum()) / a.sum()),
            "cpu_total_per_pattern": float(a.sum(axis=(-2, -1)).mean())}


def bench_memory(quick: bool, thickness_A: float, configs: int, positions_y: int,
                 device: str = "cpu", paper: bool = False, fft_threads: int = 1) -> dict:
    """Peak resident memory of one unit in a fresh process: the process's
    peak (VmHWM) is reset after imports and set-up, so the figure is the
    resident process plus what the unit adds; the resident process before the
    unit is reported too. On ``gpu`` also the peak of cupy's memory pool.
    ``paper``: the paper-scale unit of :func:`paper_unit_config`."""
    code = f"""
import json, resource, sys, tempfile
sys.path.insert(0, {str(ROOT / 'workflow')!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
from simulation import config, paper_unit_config, structure
from cbedflow.forward.cbed4d import SimulationSettings, simulate_unit, unit_seeds
import abtem, zarr
if {paper}:
    cfg = paper_unit_config({thickness_A}, {device!r})
    if {configs} > 0:  # memory does not grow with the configurations of a batch
        cfg["simulation"]["phonons"].update(configs={configs}, batch_size={configs})
else:
    cfg = config({quick}, {thickness_A}, {configs}, {positions_y}, {device!r})
cfg["simulation"]["fft_threads"] = {fft_threads}
atoms = structure(cfg, {thickness_A})
s = SimulationSettings.from_config(cfg)
n_cfg = cfg["simulation"]["phonons"]["batch_size"]
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
out = {{"rss_before_bytes": status("VmRSS")}}
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM
    out["reset"] = True
except OSError:
    out["reset"] = False
with tempfile.TemporaryDirectory() as tmp:
    simulate_unit(atoms, s, unit_seeds(1, "bench", 1, 0, n_cfg), tmp + "/u.zarr",
                  progress=lambda m: None)
    out["peak_bytes"] = status("VmHWM")
    a = zarr.open_group(tmp + "/u.zarr", mode="r")["cbed"]
    out["output_bytes"] = int(a.nbytes)
    out["configs"] = n_cfg
    out["probes"] = int(a.shape[0] * a.shape[1])
if {device!r} == "gpu":
    import cupy as cp
    out["gpu_pool_bytes"] = int(cp.get_default_memory_pool().total_bytes())
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    run = json.loads(r.stdout.strip().splitlines()[-1])
    out_b, peak, before = run["output_bytes"], run["peak_bytes"], run["rss_before_bytes"]
    extra = {}
    if "gpu_pool_bytes" in run:
        extra = {"gpu_pool_MiB": round(run["gpu_pool_bytes"] / 2**20, 1),
                 "gpu_pool_over_output": round(run["gpu_pool_bytes"] / out_b, 2)}
    return {"device": device, "thickness_A": thickness_A, "configs": run["configs"],
            "probes": run["probes"], "paper_scale": paper, "peak_reset": run["reset"],
            "output_MiB": round(out_b / 2**20, 2), "peak_rss_MiB": round(peak / 2**20, 1),
            "rss_before_MiB": round(before / 2**20, 1),
            "peak_over_output": round(peak / out_b, 2),
            "net_peak_over_output": round((peak - before) / out_b, 2), **extra}


def _print_memory(m: dict) -> None:
    gpu = (f"; GPU pool {m['gpu_pool_MiB']} MiB = {m['gpu_pool_over_output']}x"
           if "gpu_pool_MiB" in m else "")
    print(f"[3] {m['device']} unit {m['thickness_A']:g} Å, {m['probes']} probes, "
          f"{m['configs']} configs{' (paper scale)' if m['paper_scale'] else ''}: peak "
          f"{m['peak_rss_MiB']} MiB = {m['peak_over_output']}x its output "
          f"({m['output_MiB']} MiB); above the {m['rss_before_MiB']} MiB resident before "
          f"the unit: {m['net_peak_over_output']}x{gpu}", flush=True)


_PIPELINE = r"""
import json, sys, tempfile, time
import numpy as np, zarr, tensorflow as tf
sys.path.insert(0, sys.argv[1])
from cbedflow.learn.data import preprocess, zarr_dataset
from cbedflow.storage import stack_chunk_length
n, shape, batch = int(sys.argv[2]), (13, 16, 16), 16
x = np.random.default_rng(0).random((n,) + shape).astype(np.float32)
with tempfile.TemporaryDirectory() as tmp:
    g = zarr.open_group(tmp + "/e.zarr", mode="w", zarr_format=3)
    # chunked as the crop and augment stages write examples
    chunks = (stack_chunk_length(shape),) + shape
    g.create_array("x", shape=x.shape, dtype="float32", chunks=chunks,
                   compressors=None)[...] = x
    g.create_array("y", shape=(n,), dtype="int32")[...] = np.zeros(n, np.int32)
    g.create_array("thickness_A", shape=(n,), dtype="float32")[...] = np.full(n, 39.0)
    def rate(ds):
        t0 = time.perf_counter(); k = 0
        for xb, _ in ds.batch(batch).prefetch(tf.data.AUTOTUNE):
            k += int(xb.shape[0])
        return k / (time.perf_counter() - t0)
    # in memory, two ways: one example at a time, and in blocks of 64 as the
    # zarr pipeline reads (one preprocessing op per block); the faster counts
    y0 = np.zeros(n, np.int32)
    mem1 = tf.data.Dataset.from_tensor_slices((x, y0)).map(
        lambda a, b: (preprocess(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    mem64 = tf.data.Dataset.from_tensor_slices((x, y0)).batch(64).map(
        lambda a, b: (preprocess(a), b), num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    for d in (mem1, mem64):
        rate(d)  # warm-up (graph tracing)
    zds, _, _ = zarr_dataset(tmp + "/e.zarr", cache=False)
    rate(zds)
    r_mem = max(rate(d) for d in (mem1, mem64) for _ in range(3))
    r_zarr = max(rate(zarr_dataset(tmp + "/e.zarr", cache=False)[0]) for _ in range(3))
    cached = zarr_dataset(tmp + "/e.zarr", cache=True)[0]
    rate(cached)  # first epoch fills the cache
    r_cached = max(rate(cached) for _ in range(3))
    # the profile: zarr alone, every chunk read in order on one thread
    a = zarr.open_group(tmp + "/e.zarr", mode="r")["x"]
    t0 = time.perf_counter()
    for i in range(0, n, a.chunks[0]):
        a[i:i + a.chunks[0]]
    r_raw = n / (time.perf_counter() - t0)
epochs = 60  # config/reproduce.yaml: the first epoch from zarr, the rest cached
r_train = epochs / (1 / r_zarr + (epochs - 1) / r_cached)
print(json.dumps({"examples": n, "example_shape": list(shape), "in_memory_per_s": round(r_mem),
                  "zarr_per_s": round(r_zarr), "ratio": round(r_zarr / r_mem, 2),
                  "zarr_cached_per_s": round(r_cached),
                  "cached_ratio": round(r_cached / r_mem, 2),
                  "zarr_read_only_per_s": round(r_raw),
                  "training_60_epochs_ratio": round(r_train / r_mem, 2)}))
"""


def bench_pipeline(quick: bool) -> dict:
    env_dir = Path(os.environ.get("CBEDFLOW_TRAIN_ENV", ROOT / ".venv" / "train"))
    py = env_dir / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"training environment not found at {env_dir} (make envs)")
    r = subprocess.run([str(py), "-c", _PIPELINE, str(ROOT / "workflow"),
                        "512" if quick else "4096"], capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cases, < 2 minutes")
    ap.add_argument("--out", help="also write the figures as JSON")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                    help="gpu: cupy against CPU agreement, units (also one paper-scale unit) "
                         "against the cuFFT floor, thickness series, host and GPU memory; no tf.data part")
    args = ap.parse_args(argv)
    if args.device == "gpu":
        return main_gpu(args)
    t0 = time.perf_counter()
    q = args.quick
    res = {"machine": {"cpus": os.cpu_count()}, "quick": q}
    jobs = [(39.0, 2)] if q else [(39.0, 2), (98.0, 4)]
    res["job_vs_fft_floor"] = [bench_job(q, t, c) for t, c in jobs]
    for r in res["job_vs_fft_floor"]:
        _print_job(r)
    series = [39.0, 59.0, 78.0] if q else [98.0, 148.0, 199.0, 250.0, 300.0]
    s = bench_thickness_series(q, series)
    res["thickness_series"] = s
    print(f"[2] thickness series {s['thicknesses_A']} Å in one propagation: "
          f"{s['series_vs_thickest']}x the thickest alone, {s['series_vs_separate']}x separate "
          f"runs ({s['series_one_propagation_s']} s / {s['thickest_alone_s']} s / "
          f"{s['separate_runs_s']} s)", flush=True)
    res["memory"] = [bench_memory(q, 39.0, 1, ny) for ny in ((4, 16) if q else (4, 32))]
    for m in res["memory"]:
        _print_memory(m)
    p = bench_pipeline(q)
    res["input_pipeline"] = p
    print(f"[4] input pipeline: zarr first epoch {p['zarr_per_s']}/s = {p['ratio']}x, later "
          f"(cached) epochs {p['zarr_cached_per_s']}/s = {p['cached_ratio']}x the in-memory "
          f"{p['in_memory_per_s']}/s ({p['examples']} examples of {p['example_shape']}); a "
          f"60-epoch training {p['training_60_epochs_ratio']}x; zarr-python reads alone "
          f"{p['zarr_read_only_per_s']}/s", flush=True)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"benchmark wall time {res['wall_s']} s")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


def _print_job(r: dict) -> None:
    gpu = (f"; {r['speedup_vs_cpu_floor']}x faster than the 1-thread CPU FFT floor "
           f"({r['cpu_fft_floor_s']} s)") if r["device"] == "gpu" else ""
    print(f"[1] {r['device']} unit {r['thickness_A']:g} Å, {r['configs']} configs, grid "
          f"{r['gpts']}, {r['slices']} slices, {r['probes']} probes, detector "
          f"{r['detector_px']}: {r['wall_s']} s = {r['ratio']}x the bare-FFT floor "
          f"({r['fft_floor_s']} s); building the potentials takes {r['potential_build_s']} s, "
          f"the rest is {r['ratio_without_potential']}x the floor{gpu}", flush=True)
    b = r["breakdown"]
    order = ["potential", "s_matrix", "propagation", "detection_measured_apart",
             "accumulation", "host copy", "write", "other"]
    parts = ", ".join(f"{k.replace('_measured_apart', '')} {b[k]:.2f} s "
                      f"({b['over_floor'][k]:.2f}x)" for k in order if k in b)
    print(f"    stages (x the floor): {parts}; staged unit {b['wall']:.2f} s", flush=True)


def main_gpu(args) -> int:
    import cupy as cp

    t0 = time.perf_counter()
    props = cp.cuda.runtime.getDeviceProperties(0)
    res = {"machine": {"cpus": os.cpu_count(), "gpu": props["name"].decode(),
                       "cupy": cp.__version__}, "quick": args.quick, "device": "gpu"}
    print(f"GPU {res['machine']['gpu']}, cupy {cp.__version__}", flush=True)
    a = bench_gpu_agreement()
    res["agreement"] = a
    print(f"[0] gpu vs cpu, same series unit and seeds {a['shape']}: max |diff| = "
          f"{a['max_abs_diff_over_max']:.2e} of the largest pixel, total intensity differs by "
          f"{a['total_rel_diff']:.2e}", flush=True)
    res["job_vs_fft_floor"] = [bench_job(args.quick, 39.0, 2, "gpu")]
    _print_job(res["job_vs_fft_floor"][-1])
    if not args.quick:
        res["job_vs_fft_floor"].append(bench_job(False, 100.0, 8, "gpu",
                                                 cfg=paper_unit_config(100.0, "gpu")))
        _print_job(res["job_vs_fft_floor"][-1])
    if args.quick:
        s = bench_thickness_series(True, [39.0, 59.0, 78.0], "gpu")
    else:
        s = bench_thickness_series(False, [100.0, 150.0, 200.0, 250.0, 300.0], "gpu", paper=True)
    res["thickness_series"] = s
    print(f"[2] gpu thickness series {s['thicknesses_A']} Å, {s['probes']} probes, in one "
          "propagation: "
          f"{s['series_vs_thickest']}x the thickest alone, {s['series_vs_separate']}x separate "
          f"runs ({s['series_one_propagation_s']} s / {s['thickest_alone_s']} s / "
          f"{s['separate_runs_s']} s)", flush=True)
    res["memory"] = [bench_memory(True, 39.0, 1, 16, "gpu")]
    if not args.quick:
        res["memory"].append(bench_memory(False, 100.0, 8, 123, "gpu", paper=True))
        # the same unit's host memory on the CPU path (one configuration at
        # 39 Å and every core, so that it takes a minute on the GPU machine)
        res["memory"].append(bench_memory(False, 39.0, 1, 123, "cpu", paper=True,
                                          fft_threads=os.cpu_count()))
    for m in res["memory"]:
        _print_memory(m)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"benchmark wall time {res['wall_s']} s")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
