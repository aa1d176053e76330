"""Score a grown ABF campaign against the one it grew from, on the images
the smaller one never saw.

``config/abf-large.yaml`` is ``config/abf-reproduce.yaml`` with twice the
images per tilt system; its first images are the smaller campaign's (image i
is drawn from (seed, i) alone), and its splits are drawn anew, so its test
split mixes images the smaller campaign trained on with new ones. Only the
new images (index >= the smaller campaign's image count) are a fair test of
both models: this script predicts their tilt system with both ``tilt_system``
models (the plain prediction, the manifest's transform) and reports the
accuracy overall and by the largest tilt angle, next to the grown model's on
its whole test split.

    PYTHONPATH=workflow .venv/train/bin/python benchmarks/abf_grown.py \\
        --small results-abf-reproduce --grown results-abf-large \\
        --out docs/benchmarks/abf_grown.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def predict(run: Path, x: np.ndarray) -> np.ndarray:
    """Class predictions of ``run``'s tilt_system model for images ``x``."""
    import tensorflow as tf

    from cbedflow.learn.data import preprocess
    from cbedflow.learn.evaluate import heads
    from cbedflow.learn.manifest import load_model_manifest

    path = run / "models" / "tilt_system" / "all" / "model.keras"
    manifest = load_model_manifest(path)
    model = tf.keras.models.load_model(str(path), compile=False)
    xs = preprocess(tf.convert_to_tensor(x, tf.float32), manifest["task_spec"]["transform"],
                    x.ndim - 1, manifest.get("input_scaling"))
    return heads(model.predict(xs, batch_size=64, verbose=0))[0].argmax(axis=1)


def by_bin(right: np.ndarray, bins: np.ndarray) -> dict:
    return {str(int(b)): float(np.mean(right[bins == b])) for b in np.unique(bins)}


def main(argv=None) -> int:
    import zarr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=Path, required=True, help="the smaller campaign's output_dir")
    ap.add_argument("--grown", type=Path, required=True, help="the grown campaign's output_dir")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    n_small = zarr.open_group(str(a.small / "dataset.zarr"), mode="r")["abf"].shape[0]
    test = zarr.open_group(str(a.grown / "tasks" / "tilt_system" / "test.zarr"), mode="r")
    x, y = test["x"][...], test["y"][...].astype(int)
    s, bins = test["structure_index"][...], test["max_tilt_bin"][...]
    trained_small = set()
    for split in ("train", "validation"):
        g = zarr.open_group(str(a.small / "tasks" / "tilt_system" / f"{split}.zarr"), mode="r")
        trained_small |= set(g["structure_index"][...].tolist())
    new = s >= n_small
    assert not (set(s[new].tolist()) & trained_small)
    out = {"what": __doc__.split("\n\n")[1].replace("\n", " "),
           "small": str(a.small), "grown": str(a.grown), "small_images": int(n_small),
           "grown_test_images": int(len(y)), "new_test_images": int(new.sum())}
    for name, run in (("small", a.small), ("grown", a.grown)):
        right = predict(run, x) == y
        out[name] = {"new_images": {"accuracy": float(right[new].mean()),
                                    "by_max_tilt_bin_deg": by_bin(right[new], bins[new])}}
        if name == "grown":
            out[name]["whole_test_split"] = {"accuracy": float(right.mean()),
                                             "by_max_tilt_bin_deg": by_bin(right, bins)}
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k in ("small", "grown")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
