"""The campaign's results in one JSON document (``{output_dir}/summary.json``).

Gathers every model's held-out metrics and its ring-feature baseline per task,
validates the document against ``workflow/schemas/summary.schema.yaml`` and
writes it atomically. ``docs/results/`` holds a committed copy of the
reproduction run's summary; a test checks it against the same schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .storage import write_json

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "summary.schema.yaml"

#: Accuracy bars of the reproduction (issue: rough vs diffuse >= 95 %, step
#: position >= 85 % per thickness), shown as a line in the accuracy plots.
TARGETS = {"rough_vs_diffuse": 0.95, "step_position": 0.85}


def _mc_per_thickness(predictions: str | Path) -> dict:
    """Per-thickness accuracy of the MC-dropout mean prediction."""
    import numpy as np

    from .metrics import fraction_by_thickness

    p = np.load(predictions)
    return fraction_by_thickness(p["mc_mean"].argmax(axis=1) == p["y"], p["thickness_A"])


def _cnn(metrics: dict, predictions: str | Path) -> dict:
    keep = ("accuracy", "per_thickness_accuracy", "accuracy_by_step_k", "confusion_matrix",
            "classes", "n_test", "n_test_structures", "within_one_class",
            "per_thickness_within_one_class", "per_class")
    out = {k: metrics[k] for k in keep if k in metrics}
    out["mc_dropout_accuracy"] = metrics["mc_dropout"]["accuracy"]
    out["mc_dropout_samples"] = metrics["mc_dropout"]["samples"]
    out["mc_dropout_ece"] = metrics["mc_dropout"]["calibration"]["ece"]
    out["softmax_ece"] = metrics["softmax_calibration"]["ece"]
    out["mc_dropout_per_thickness_accuracy"] = _mc_per_thickness(predictions)
    return out


def _baseline(b: dict) -> dict:
    keep = ("accuracy", "per_thickness_accuracy", "accuracy_by_step_k", "within_one_class",
            "per_thickness_within_one_class", "method", "C", "n_train", "n_test")
    return {k: b[k] for k in keep if k in b}


def build_summary(config: dict, models: list[dict]) -> dict:
    """``models``: dicts with ``task``, ``model`` (id), ``metrics``,
    ``predictions`` and ``baseline`` paths."""
    from .config import config_hash
    from .provenance import package_versions

    tasks: dict[str, dict] = {}
    for m in models:
        metrics = json.loads(Path(m["metrics"]).read_text())
        base = json.loads(Path(m["baseline"]).read_text())
        t = tasks.setdefault(m["task"], {"target_accuracy": TARGETS.get(m["task"]),
                                         "models": {}})
        t["models"][m["model"]] = {"spec": metrics["model"],
                                   "cnn": _cnn(metrics, m["predictions"]),
                                   "baseline": _baseline(base)}
    return {
        "schema_version": 1,
        "config_hash": config_hash(config),
        "seed": config["seed"],
        "campaign": {
            "structures_per_class": config["structures"]["per_class"],
            "thicknesses_A": config["structures"]["thicknesses_A"],
            "phonon_configurations": config["simulation"]["phonons"]["configs"],
            "sampling_A": config["simulation"]["sampling_A"],
            "detector_max_angle_mrad": config["simulation"]["detector_max_angle_mrad"],
            "scan_positions": [config["simulation"]["scan"]["positions_x"],
                               config["simulation"]["scan"]["positions_y"]],
        },
        "versions": package_versions(("abtem", "numpy", "zarr", "scikit-learn", "cbedflow")),
        "tasks": tasks,
    }


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def check_summary(doc: dict) -> None:
    """Raise ValueError naming the first place ``doc`` breaks the schema."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(load_schema()).iter_errors(doc),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ValueError(f"summary {where}: {e.message}")


def write_summary(doc: dict, out: str | Path) -> None:
    check_summary(doc)
    write_json(out, doc)


def headline_rst(doc: dict) -> str:
    """The report's landing-page section: every model's held-out accuracy
    (CNN, MC-dropout mean, baseline) from a summary document, with links to
    the report's Evaluation category and accuracy figures (Snakemake report
    targets, by file name)."""
    rows = []
    for task, t in sorted(doc["tasks"].items()):
        for model, m in t["models"].items():
            cnn, base = m["cnn"], m.get("baseline") or {}
            rows.append((task, model, f"{cnn['accuracy']:.3f}",
                         f"{cnn['mc_dropout_accuracy']:.3f}",
                         f"{base['accuracy']:.3f}" if "accuracy" in base else "-",
                         str(cnn["n_test"]), f"{t.get('target_accuracy', float('nan')):.2f}"))
    head = ("task", "model", "CNN", "MC dropout", "baseline", "test examples", "target")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = " ".join("=" * w for w in widths)

    def fmt(row):
        return " ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()

    table = "\n".join([line, fmt(head), line, *map(fmt, rows), line])
    return ("\n\nHeadline results\n----------------\n\n"
            "Held-out accuracy of every model on test structures that no model or baseline "
            "saw in training (the baseline: ring-feature logistic regression on the same "
            "examples). Figures: `Evaluation`_ (confusion matrices, reliability, examples, "
            "`accuracy_overview.png`_ per task); the numbers: `summary.json`_.\n\n"
            + table + "\n")
