"""The campaign's results in one JSON document (``{output_dir}/summary.json``).

Gathers every model's held-out metrics and its baseline per task,
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



def _mc_per_thickness(predictions: str | Path) -> dict:
    """Per-thickness accuracy of the MC-dropout mean prediction."""
    import numpy as np

    from .metrics import fraction_by_thickness

    p = np.load(predictions)
    return fraction_by_thickness(p["mc_mean"].argmax(axis=1) == p["y"], p["thickness_A"])


def _by_keys(d: dict) -> list[str]:
    return [k for k in d if k.startswith("accuracy_by_")]


def _regression_extras(d: dict) -> dict:
    """The vector scores and the per-label breakdowns of a regression."""
    return {k: d[k] for k in d if k == "vector" or k.startswith("mae_by_")}


def _targets(t: dict) -> dict:
    return {name: {k: v[k] for k in ("mae", "rmse", "r2", "unit")} for name, v in t.items()}


def _aux_head(d: dict) -> dict:
    """The second (regression) head of a two-head network (``Task.aux``),
    or its ridge baseline: targets, mean R² and the per-label breakdowns."""
    out = {"targets": _targets(d["targets"]), "r2_mean": d["r2_mean"],
           **_regression_extras(d)}
    if "method" in d:
        out["method"] = d["method"]
    return out


def _cnn(metrics: dict, predictions: str | Path) -> dict:
    if metrics.get("kind") == "regression":
        mc = metrics["mc_dropout"]
        return {"kind": "regression", "targets": _targets(metrics["targets"]),
                "r2_mean": metrics["r2_mean"], "n_test": metrics["n_test"],
                "n_test_structures": metrics["n_test_structures"],
                "mc_dropout_samples": mc["samples"],
                "mc_dropout_targets": _targets(mc["targets"]),
                "mc_dropout_r2_mean": mc["r2_mean"],
                "mc_dropout_coverage": mc["coverage"],
                "mc_dropout_calibrated_coverage": mc["calibrated_coverage"],
                "mc_dropout_calibration_scale": mc["calibration_scale"],
                **_regression_extras(metrics)}
    keep = ("accuracy", "per_thickness_accuracy", "confusion_matrix",
            "classes", "n_test", "n_test_structures", "within_one_class",
            "per_thickness_within_one_class", "per_class", *_by_keys(metrics))
    out = {k: metrics[k] for k in keep if k in metrics}
    out["mc_dropout_accuracy"] = metrics["mc_dropout"]["accuracy"]
    out["mc_dropout_samples"] = metrics["mc_dropout"]["samples"]
    out["mc_dropout_ece"] = metrics["mc_dropout"]["calibration"]["ece"]
    out["softmax_ece"] = metrics["softmax_calibration"]["ece"]
    out["mc_dropout_per_thickness_accuracy"] = _mc_per_thickness(predictions)
    if "aux_head" in metrics:
        out["aux_head"] = _aux_head(metrics["aux_head"])
    return out


def _baseline(b: dict) -> dict:
    if b.get("kind") == "regression":
        out = {"kind": "regression", "targets": _targets(b["targets"]),
               "r2_mean": b["r2_mean"], "method": b["method"], "alpha": b.get("alpha"),
               "n_train": b["n_train"], "n_test": b["n_test"], **_regression_extras(b)}
        if "n_failed" in b:  # a direct method: examples it could not measure
            out["n_failed"] = b["n_failed"]
        if b.get("readout"):  # it predicts the readout's quantities, not the network's
            out["readout"] = b["readout"]
        return out
    keep = ("accuracy", "per_thickness_accuracy", "within_one_class",
            "per_thickness_within_one_class", "method", "C", "n_train", "n_test",
            *_by_keys(b))
    out = {k: b[k] for k in keep if k in b}
    if "aux_head" in b:
        out["aux_head"] = _aux_head(b["aux_head"])
    return out


def _readout(r: dict, base: dict | None = None) -> dict:
    """A readout's scores beside the baseline's on the same samples (it
    predicts the same quantities; readout.json holds both)."""
    def part(d):
        return {"r2_mean": d["r2_mean"], "groups": d.get("groups", {}),
                "targets": {k: {"r2": v["r2"], "mae": v["mae"], "unit": v["unit"]}
                            for k, v in d["targets"].items()}}

    b = r.get("baseline")  # the baseline on the readout's own samples
    return {"name": r["readout"], "n_test": r["n"], "network": part(r),
            "baseline": part(b) if b and "targets" in b else None,
            "alternatives": r.get("alternatives", {})}


def _test_set(paths: dict, metrics: dict) -> dict:
    """cnn, baseline and (if any) readout of one model on one test set."""
    base = json.loads(Path(paths["baseline"]).read_text())
    out = {"cnn": _cnn(metrics, paths["predictions"]), "baseline": _baseline(base)}
    if paths.get("readout"):
        out["readout"] = _readout(json.loads(Path(paths["readout"]).read_text()), base)
    return out


def _breakdown_title(camp, task: str) -> str:
    t = camp.tasks.get(task)
    return t.breakdown_title if t is not None else ""


def build_summary(config: dict, models: list[dict]) -> dict:
    """``models``: dicts with ``task``, ``model`` (id), ``metrics``,
    ``predictions`` and ``baseline`` paths."""
    from .campaigns import get_campaign
    from .config import config_hash
    from .provenance import package_versions

    camp = get_campaign(config)
    tasks: dict[str, dict] = {}
    for m in models:
        metrics = json.loads(Path(m["metrics"]).read_text())
        t = tasks.setdefault(m["task"], {"target_accuracy": camp.target_accuracy.get(m["task"]),
                                         "kind": metrics.get("kind", "classification"),
                                         "breakdown_title": _breakdown_title(camp, m["task"]),
                                         "models": {}})
        entry = {"spec": metrics["model"], **_test_set(m, metrics)}
        if m.get("noisy_test"):  # evaluate.noisy_test: the same on a noisy test split
            noisy = m["noisy_test"]
            entry["noisy_test"] = _test_set(noisy, json.loads(Path(noisy["metrics"]).read_text()))
        t["models"][m["model"]] = entry
    return {
        "schema_version": 1,
        "config_hash": config_hash(config),
        "seed": config["seed"],
        "campaign": {"name": camp.name, **camp.summary_info()},
        "versions": package_versions(tuple(camp.packages) + ("scikit-learn",)),
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


def model_line(mid: str, m: dict) -> str:
    """One line of a model's held-out result beside its baseline's."""
    cnn, base = m["cnn"], m.get("baseline") or {}
    if m.get("readout"):
        r = m["readout"]
        b = r.get("baseline") or {}
        groups = "; ".join(
            f"{g} {v:.3f}" + (f" (baseline {b['groups'][g]:.3f})" if g in b.get("groups", {})
                              else "")
            for g, v in r["network"]["groups"].items())
        alts = "".join(f"; {name}: R² {a['r2_mean']:.3f}"
                       for name, a in (r.get("alternatives") or {}).items())
        return (f"{mid}: {r['name']} R² network {r['network']['r2_mean']:.3f}, baseline "
                f"{b.get('r2_mean', float('nan')):.3f} on {r['n_test']} test samples; {groups}; "
                f"network output R² {cnn['r2_mean']:.3f}{alts}")
    if cnn.get("kind") == "regression":
        if base.get("readout"):  # a baseline of other quantities: no comparison here
            base = {}
        parts = []
        for name, t in cnn["targets"].items():
            b = (base.get("targets") or {}).get(name, {})
            unit = f" {t['unit']}" if t["unit"] else ""
            parts.append(f"{name}: R² {t['r2']:.3f} MAE {t['mae']:.3g}{unit}"
                         + (f" (baseline R² {b['r2']:.3f})" if b else ""))
        cov = cnn["mc_dropout_calibrated_coverage"]
        return (f"{mid}: network R² {cnn['r2_mean']:.3f}, baseline "
                f"{base.get('r2_mean', float('nan')):.3f}; " + "; ".join(parts)
                + f"; MC-dropout 68/95 % intervals cover {cov['68']:.2f}/{cov['95']:.2f} "
                f"(calibrated) on {cnn['n_test']} examples")
    line = f"{mid}: held-out accuracy CNN {cnn['accuracy']:.3f}"
    if cnn.get("mc_dropout_accuracy") is not None:
        line += f" (MC dropout {cnn['mc_dropout_accuracy']:.3f})"
    if "accuracy" in base:
        line += f", baseline {base['accuracy']:.3f}"
    line += (f" on {cnn['n_test']} examples from {cnn['n_test_structures']} test "
             "structures")
    if "aux_head" in cnn:  # the same network's second (regression) head
        b = (base.get("aux_head") or {}).get("targets", {})
        parts = [f"{name} MAE {t['mae']:.3g}{' ' + t['unit'] if t['unit'] else ''}"
                 + (f" (baseline {b[name]['mae']:.3g})" if name in b else "")
                 for name, t in cnn["aux_head"]["targets"].items()]
        line += (f"; second head R² {cnn['aux_head']['r2_mean']:.3f}, "
                 f"baseline {(base.get('aux_head') or {}).get('r2_mean', float('nan')):.3f}: "
                 + ", ".join(parts))
    return line


def _rst_table(head, rows) -> str:
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = " ".join("=" * w for w in widths)

    def fmt(row):
        return " ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()

    return "\n".join([line, fmt(head), line, *map(fmt, rows), line])


def headline_rst(doc: dict) -> str:
    """The report's landing-page section: every model's held-out result
    (classification: CNN, MC-dropout mean, baseline accuracy; regression: R²
    and MAE per target, baseline R², interval coverage) from a summary
    document, with links to the report's Evaluation category and figures
    (Snakemake report targets, by file name)."""
    cls_rows, reg_rows, ro_rows = [], [], []
    for task, t in sorted(doc["tasks"].items()):
        sets = [(model, m) for model, m in t["models"].items()]
        sets += [(f"{model} (noisy test)", m["noisy_test"]) for model, m in t["models"].items()
                 if m.get("noisy_test")]
        for model, m in sets:
            cnn, base = m["cnn"], m.get("baseline") or {}
            if m.get("readout"):
                r = m["readout"]
                rb = r.get("baseline") or {}
                for g, v in [("all (mean)", r["network"]["r2_mean"]),
                             *r["network"]["groups"].items()]:
                    b = rb.get("r2_mean") if g == "all (mean)" else rb.get("groups", {}).get(g)
                    ro_rows.append((task, model, r["name"], g, f"{v:.3f}",
                                    "-" if b is None else f"{b:.3f}", str(r["n_test"])))
                base = {}  # its baseline predicts the readout, not the network's output
            if cnn.get("kind") == "regression":
                for name, v in cnn["targets"].items():
                    b = (base.get("targets") or {}).get(name, {})
                    cov = cnn["mc_dropout_calibrated_coverage"]
                    reg_rows.append((task, model, name, f"{v['r2']:.3f}",
                                     f"{v['mae']:.3g} {v['unit']}".strip(),
                                     f"{b['r2']:.3f}" if b else "-",
                                     f"{cov['68']:.2f}/{cov['95']:.2f}", str(cnn["n_test"])))
                continue
            target = t.get("target_accuracy")
            cls_rows.append((task, model, f"{cnn['accuracy']:.3f}",
                             f"{cnn['mc_dropout_accuracy']:.3f}",
                             f"{base['accuracy']:.3f}" if "accuracy" in base else "-",
                             str(cnn["n_test"]), "-" if target is None else f"{target:.2f}"))
    out = ("\n\nHeadline results\n----------------\n\n"
           "Held-out results of every model on test structures that no model or baseline "
           "saw in training (the baseline: the campaign's features with logistic or ridge "
           "regression on the same examples). Figures: `Evaluation`_ (confusion matrices, "
           "reliability, parity and residual plots, examples, `accuracy_overview.png`_ per "
           "task); the numbers: `summary.json`_.\n\n")
    if cls_rows:
        out += _rst_table(("task", "model", "CNN", "MC dropout", "baseline", "test examples",
                           "target"), cls_rows) + "\n"
    if reg_rows:
        out += ("\n" if cls_rows else "") + _rst_table(
            ("task", "model", "target", "R²", "MAE", "baseline R²",
             "68/95 % coverage", "test examples"), reg_rows) + "\n"
    if ro_rows:
        out += ("\nReadouts: quantities derived from the network's output (e.g. structure "
                "parameters fitted to it), mean R² per group, beside the baseline that "
                "predicts them straight from the input.\n\n") + _rst_table(
            ("task", "model", "readout", "group", "network R²", "baseline R²",
             "test samples"), ro_rows) + "\n"
    return out


def status_lines(config: dict) -> list[str]:
    """What ``cbedflow summary`` (``make run``) prints: where the dataset is
    and what it holds, where the report is, and every model's held-out
    result beside its baseline's (from ``evaluation/<task>/<model>/``)."""
    import zarr

    from .campaigns import get_campaign

    camp = get_campaign(config)
    path = Path(camp.dataset_path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset yet at {path.resolve()}: run snakemake first")
    ds = zarr.open_group(str(path), mode="r")
    lines = [f"dataset: {path.resolve()}", *camp.describe_dataset(ds)]
    report = Path(camp.output_dir) / "report.html"
    if report.exists():
        lines.append(f"report: {report.resolve()}")
    return lines + accuracy_lines(camp)


def accuracy_lines(camp) -> list[str]:
    """One line per trained model: its held-out result (classification: CNN
    accuracy and its MC-dropout mean; regression: R² and MAE per target,
    interval coverage) beside the baseline's on the same test set, from
    ``evaluation/<task>/<model>/{metrics,baseline}.json``."""
    from .tasks import model_specs

    lines = []
    for task in camp.config["tasks"]:
        variants = camp.config["train"]["variants"].get(task, ["all"])
        for spec in model_specs(variants, camp.thicknesses):
            d = Path(camp.output_dir) / "evaluation" / task / spec.id
            if not (d / "metrics.json").exists():
                lines.append(f"  {task}/{spec.id}: not evaluated yet")
                continue
            lines.append("  " + model_line(f"{task}/{spec.id}", _entry_from_dir(d)))
            if (d / "noisy" / "metrics.json").exists():
                lines.append("  " + model_line(f"{task}/{spec.id} (noisy test)",
                                               _entry_from_dir(d / "noisy")))
    return lines


def _entry_from_dir(d: Path) -> dict:
    """A model's summary entry from the files of one test set's evaluation folder."""
    met = json.loads((d / "metrics.json").read_text())
    base = json.loads((d / "baseline.json").read_text()) if (d / "baseline.json").exists() else {}
    entry = {"cnn": _cnn(met, d / "predictions.npz"), "baseline": _baseline(base) if base else {}}
    if (d / "readout.json").exists():
        entry["readout"] = _readout(json.loads((d / "readout.json").read_text()), base)
    return entry


def publish(results: str | Path, measured: list[str], out: str | Path,
            commit: str | None = None, machine: str = "") -> list[str]:
    """Copy a finished campaign's summary and plots to a results folder with
    the run record (command, commit, wall time, peak memory)."""
    import shutil
    import subprocess

    res, out = Path(results), Path(out)
    summary = json.loads((res / "summary.json").read_text())
    check_summary(summary)
    runs = [json.loads(Path(m).read_text()) for m in measured]
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for png in sorted((res / "plots").rglob("*.png")):
        name = "_".join(png.relative_to(res / "plots").parts)
        shutil.copyfile(png, out / name)
        plots.append(name)
    shutil.copyfile(res / "summary.json", out / "summary.json")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    record = {
        "command": runs[-1]["command"],
        "commit": commit or head,
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
        # a step whose memory was not sampled records null
        "peak_rss_GiB": max(r["peak_rss_GiB"] for r in runs
                            if r.get("peak_rss_GiB") is not None),
        "steps": runs,
        "machine": machine,
        "plots": plots,
    }
    write_json(out / "run.json", record)
    return plots


