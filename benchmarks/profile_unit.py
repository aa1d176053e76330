"""Where a simulation unit's time goes: cProfile of ``simulate_unit``.

    python benchmarks/profile_unit.py                       # tiny unit, cpu
    python benchmarks/profile_unit.py --paper --device gpu  # paper-scale unit on cupy

Prints the functions with the largest cumulative time (one warm-up unit
first, so imports, FFT plans and kernel compilation are not counted). On the
GPU, kernels run asynchronously: their time shows up where the result is
copied to the host (``_to_numpy``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from simulation import config, paper_unit_config, structure  # noqa: E402

from cbedflow.forward.cbed4d import SimulationSettings, simulate_unit, unit_seeds  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--paper", action="store_true", help="paper-scale unit (100 Å)")
    ap.add_argument("--configs", type=int, default=2, help="frozen-phonon configurations")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    t = 100.0 if args.paper else 39.0
    cfg = paper_unit_config(t, args.device) if args.paper else config(True, t, 2, device=args.device)
    cfg["simulation"]["phonons"].update(configs=args.configs, batch_size=args.configs)
    atoms = structure(cfg, t)
    settings = SimulationSettings.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        simulate_unit(atoms, settings, unit_seeds(2, "warm-up", 1, 0, 1), Path(tmp) / "w.zarr",
                      progress=lambda m: None)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        simulate_unit(atoms, settings, unit_seeds(1, "profile", 1, 0, args.configs),
                      Path(tmp) / "u.zarr", progress=lambda m: None)
        prof.disable()
        wall = time.perf_counter() - t0
    print(f"{args.device} unit {t:g} Å, {args.configs} configs, grid {settings.gpts(atoms)}: "
          f"{wall:.2f} s")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
