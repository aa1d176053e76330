"""Write the twin-domain test split of an ABF tilt run: every test image of
``<run>/tasks/<task>/test.zarr`` replaced by the image of its structure
mirrored x -> -x (``cbedflow.campaigns.abf_tilts.mirror_x``: exact, the twin
domain the structure builder never makes; labels unchanged). Score a model
on it with the usual evaluation, e.g. (docs/abf.md, "Twin domains")::

    PYTHONPATH=workflow .venv/simulate/bin/python benchmarks/abf_twin_domain.py \\
        --run results-abf-reproduce --out /tmp/twin
    PYTHONPATH=workflow .venv/train/bin/python -m cbedflow evaluate --task tilt_system \\
        --model results-abf-reproduce/models/tilt_system/all/model.keras \\
        --test /tmp/twin/tilt_system/test.zarr \\
        --params '{"campaign": "abf_tilts", "evaluate": {"calibration_bins": 10, "mc_dropout_samples": 10}}' \\
        --out-json /tmp/twin/tilt_system/metrics.json --out-predictions /tmp/twin/tilt_system/p.npz
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))


def main() -> None:
    import zarr

    from cbedflow.campaigns.abf_tilts import mirror_x

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="output_dir of an abf_tilts campaign")
    ap.add_argument("--out", required=True, help="folder for <task>/test.zarr")
    ap.add_argument("--tasks", nargs="+", default=["tilt_system", "tilt_angles"])
    a = ap.parse_args()
    for task in a.tasks:
        src = Path(a.run) / "tasks" / task / "test.zarr"
        dst = Path(a.out) / task / "test.zarr"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        g = zarr.open_group(str(dst), mode="r+")
        x = g["x"][...]
        g["x"][...] = np.stack([mirror_x(v) for v in x]).astype(x.dtype)
        g.attrs["twin_domain_of"] = str(src)
        print(f"{task}: {len(x)} test images mirrored -> {dst}")


if __name__ == "__main__":
    main()
