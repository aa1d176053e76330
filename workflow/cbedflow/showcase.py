"""The showcase: a simulated image with known ground truth, read by the
trained models as if it were measured, its maps beside the truth in the
report (``python -m cbedflow showcase image|predict|maps``).

Three steps, each a rule of ``workflow/rules/showcase.smk``:

1. ``image`` (simulation environment): the campaign simulates the image
   (``Campaign.showcase_image``) into a folder: ``image.npy`` and
   ``truth.json`` (the truth and ``predict_options``, the reader options
   predict needs).
2. ``predict`` (training environment): :func:`cbedflow.predict.predict` on
   ``image.npy`` with those options, one folder per task.
3. ``maps``: the campaign draws the predictions beside the truth and scores
   them (``Campaign.showcase_maps``); the score goes to a JSON beside the
   figure.

This module knows no campaign: what the image is and how it is scored is
the campaign's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

#: Files of the image folder (step 1).
IMAGE_FILE = "image.npy"
TRUTH_FILE = "truth.json"


def write_image(camp, out_dir: str | Path, progress: Callable[[str], None] = print) -> dict:
    """Step 1: the campaign's showcase image and truth in ``out_dir``.

    Returns the truth dict; raises ValueError if the campaign's hook did not
    write both files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = camp.showcase_image(out, progress=progress)
    missing = [f for f in (IMAGE_FILE, TRUTH_FILE) if not (out / f).is_file()]
    if missing:
        raise ValueError(f"campaign {camp.name}: showcase_image wrote no {', '.join(missing)} "
                         f"in {out}")
    return truth


def read_truth(image_dir: str | Path) -> dict:
    """The truth dict of an image folder (``truth.json``)."""
    return json.loads((Path(image_dir) / TRUTH_FILE).read_text())


def predict_image(camp, model: str | Path, task: str, image_dir: str | Path,
                  out_dir: str | Path, mc_samples: int = 1) -> dict:
    """Step 2: ``predict`` of one task's model on the showcase image, with the
    reader options of ``truth.json`` (``predict_options``); writes
    ``out_dir`` as ``cbedflow predict`` does. Returns its result."""
    from .predict import predict

    truth = read_truth(image_dir)
    options = dict(truth.get("predict_options") or {})
    thickness = options.pop("thickness_A", None)
    return predict(camp, model, task, Path(image_dir) / IMAGE_FILE, out_dir, options,
                   thickness, mc_samples)


def write_maps(camp, image_dir: str | Path, predictions: dict[str, str | Path],
               out_png: str | Path, out_json: str | Path) -> dict:
    """Step 3: the campaign's figure of the predictions (task -> the folder
    step 2 wrote) beside the truth, and its score as JSON (with the truth
    and the tasks' model paths). Returns the score."""
    truth = read_truth(image_dir)
    results = {task: json.loads((Path(d) / "predictions.json").read_text())
               for task, d in predictions.items()}
    score = camp.showcase_maps(Path(image_dir) / IMAGE_FILE, truth, results, out_png)
    doc = {"campaign": camp.name, "image": str(Path(image_dir) / IMAGE_FILE),
           "figure": str(out_png),
           "models": {task: r.get("model") for task, r in results.items()},
           "truth": {k: v for k, v in truth.items() if k != "settings"}, **score}
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps(doc, indent=1) + "\n")
    return score
