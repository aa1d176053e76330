"""Readouts: quantities derived from a network's output that have their own
truth (``Task.readout``; e.g. the layer parameters fitted to a predicted
curve). Generic: the campaign computes the readout
(``Campaign.readout``); this stage feeds it the test predictions, scores it
(MAE, RMSE, R² per quantity, mean R² per group) beside the baseline, which
for a readout task predicts the quantities directly, and draws the
campaign's figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .metrics import group_r2, regression_metrics
from .storage import atomic_file, open_complete, write_json


def score(result: dict) -> dict:
    """Metrics of a readout dict (``names``, ``units``, ``groups``,
    ``truth``, ``predicted``): per quantity, their mean R² and per group."""
    m = regression_metrics(result["truth"], result["predicted"], result["names"],
                           result["units"])
    m["groups"] = group_r2(m["targets"], result["groups"])
    m["n"] = int(len(result["truth"]))
    return m


def run_readout(camp, task, predictions: str | Path, test: str | Path, dataset: str | Path,
                config: dict, out_json: str | Path, out_npz: str | Path,
                baseline_json: str | Path | None = None, plots_dir: str | Path | None = None,
                progress: Callable[[str], None] = print) -> dict:
    """The readout of a model's test predictions (``predictions.npz`` of
    evaluate), scored, with the campaign's figures in ``plots_dir``."""
    pred = np.load(predictions)
    g = open_complete(test, array="x")
    idx = pred["index"]
    structure = g["structure_index"][...][idx]
    k = min(len(idx), int(config.get("evaluate", {}).get("fit_films", len(idx))))
    measured = g["x"].get_orthogonal_selection((np.asarray(idx[:k], np.int64),))
    result = camp.readout(task, pred["predicted"], structure, dataset, config, progress,
                          measured=measured)
    metrics = score(result)
    metrics.update(readout=task.readout, task=task.name, method=f"network + {task.readout}")
    n = len(result["truth"])
    # other ways to the same quantities the campaign computes for reference
    # (e.g. a fit without the network), scored on the same samples
    metrics["alternatives"] = {}
    for name, values in (result.get("alternatives") or {}).items():
        alt = score(dict(result, predicted=values))
        metrics["alternatives"][name] = {"r2_mean": alt["r2_mean"], "groups": alt["groups"]}
    base = None
    if baseline_json is not None and Path(baseline_json).exists():
        import json

        base = json.loads(Path(baseline_json).read_text())
        first = np.asarray(base.get("first_predictions", []), float)
        if len(first) < n:
            raise ValueError(f"{baseline_json}: holds the baseline's predictions of "
                             f"{len(first)} test samples, the readout scores {n}; rerun the "
                             "baseline with the same evaluate settings")
        same = score(dict(result, predicted=first[:n]))
        # the baseline on the readout's samples (the comparison), and on every test sample
        metrics["baseline"] = {"r2_mean": same["r2_mean"], "groups": same["groups"],
                               "targets": same["targets"], "method": base.get("method"),
                               "all_test": {"r2_mean": base["r2_mean"],
                                            "groups": base.get("groups", {}),
                                            "n": base.get("n_test")}}
        base = metrics["baseline"]
    with atomic_file(out_npz) as tmp:
        np.savez(tmp, predicted=result["predicted"], truth=result["truth"],
                 structure_index=structure[:n], names=np.array(result["names"]),
                 **{f"alternative_{i}": v for i, v in
                    enumerate((result.get("alternatives") or {}).values())})
    if plots_dir is not None:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        figs = dict(result, baseline_targets=(base or {}).get("targets"),
                    field_predicted=pred["predicted"][0], field_true=g["y"][int(idx[0])])
        metrics["figures"] = [str(p) for p in camp.plot_readout(figs, dataset, plots_dir)]
    write_json(out_json, metrics)
    return metrics


def run_measured_readout(camp, task, prediction_dir: str | Path, data: str | Path,
                         config: dict, out_dir: str | Path,
                         progress: Callable[[str], None] = print) -> dict:
    """The readout of a prediction on measured data (``predictions.json`` in
    ``prediction_dir``, written by predict): ``readout.json``, ``readout.csv``
    (one row per quantity: value and standard error per method) and
    ``readout.png`` in ``out_dir``, written atomically."""
    import csv
    import json

    from .storage import atomic_dir

    pred = json.loads((Path(prediction_dir) / "predictions.json").read_text())
    result = camp.readout_measured(task, pred, data, config, progress)
    result.update(readout=task.readout, task=task.name, input=str(data),
                  prediction=str(prediction_dir))
    methods = list(result["methods"])
    with atomic_dir(out_dir) as tmp:
        (tmp / "readout.json").write_text(json.dumps(result, indent=2))
        with open(tmp / "readout.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["quantity", "unit", "group"]
                       + [c for m in methods for c in (m, f"{m} std")])
            for i, name in enumerate(result["names"]):
                w.writerow([name, result["units"][i], result["groups"][i]]
                           + [f"{v:.6g}" for m in methods
                              for v in (result["methods"][m]["values"][i],
                                        result["methods"][m]["std"][i])])
        camp.plot_measured_readout(result, tmp / "readout.png")
    return result
