"""Command line of the campaign stages: ``python -m cbedflow <stage> ...``.

Snakemake rules call these commands (thin rules); a user can run any stage
by hand with the same arguments. Stage parameters arrive as one JSON object
(``--params``) holding the validated config sections the stage depends on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import check_splits, load

    cfg = load(args.config)
    check_splits(cfg)
    print(json.dumps(cfg, indent=2) if args.show else f"{args.config}: valid")
    return 0


def _campaign(params: dict):
    from .campaigns import get_campaign

    return get_campaign(params)


def cmd_simulate_job(args: argparse.Namespace) -> int:
    """One packed batch job: its units spread over the MPI ranks."""
    from .packing import run_packed_job

    run_packed_job(json.loads(args.params), args.job, args.units_per_job, args.ranks,
                   args.manifest)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """One unit, by hand (the packed jobs do the same for every unit)."""
    params = json.loads(args.params)
    _campaign(params).simulate_unit(args.name, args.part, args.batch, args.out, progress=_log)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import collect
    from .config import config_hash

    params = json.loads(args.params)
    camp = _campaign(params)
    units = list(args.units)
    if args.campaign_units:
        units += camp.unit_paths()
    collect(camp, units, args.out, progress=_log, provenance={
        "config_hash": config_hash(params), "seed": params.get("seed"),
    })
    print(f"dataset written to {Path(args.out).resolve()}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """Print where the campaign's dataset is, what it holds, and every
    model's held-out result beside its baseline's."""
    from .config import load
    from .summary import status_lines

    try:
        lines = status_lines(load(args.configfile))
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def cmd_crop(args: argparse.Namespace) -> int:
    from .examples import examples_for_task
    from .tasks import get_task

    params = json.loads(args.params)
    camp = _campaign(params)
    examples_for_task(camp, args.dataset, get_task(camp, args.task), args.out_dir, params,
                      progress=_log)
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from .examples import augment

    params = json.loads(args.params)
    augment(_campaign(params), args.train, args.out, params, progress=_log,
            noisy_test=args.noisy_test)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .learn.loop import train
    from .tasks import get_task

    params = json.loads(args.params)
    camp = _campaign(params)
    task = get_task(camp, args.task)
    spec = task.to_dict()
    # train.input_transform / input_scaling override the task's (null: keep)
    for key, name in (("input_transform", "transform"), ("input_scaling", "input_scaling")):
        if params["train"].get(key) is not None:
            spec[name] = params["train"][key]
    p = dict(params["train"], task=task.name, task_spec=spec, seed=params["seed"],
             campaign=camp.name, geometry_keys=list(camp.geometry_keys))
    p.pop("input_transform", None)
    p.pop("input_scaling", None)
    p.pop("variants", None)  # which models exist is the workflow's business
    if "model" in params:
        p.update(model=params["model"],
                 nominal_thicknesses_A=params.get("nominal_thicknesses_A", []))
    return train(p, args.train, args.validation, args.out_dir,
                 walltime_s=args.walltime_min * 60 if args.walltime_min else None,
                 expected_ranks=args.ranks)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .learn.evaluate import evaluate
    from .summary import _cnn, model_line
    from .tasks import get_task

    params = json.loads(args.params) if args.params else {}
    task = get_task(_campaign(params), args.task)
    ev = params.get("evaluate", {})
    m = evaluate(args.model, args.test, task, args.out_json, args.out_predictions,
                 mc_samples=ev.get("mc_dropout_samples", 30),
                 bins=ev.get("calibration_bins", 10), validation_path=args.validation)
    line = model_line(f"{task.name}/{m['model']['id']}",
                      {"cnn": _cnn(m, args.out_predictions), "baseline": {}})
    if not task.is_regression:
        line += f", MC-dropout ECE {m['mc_dropout']['calibration']['ece']:.3f}"
    _log(line)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from .baseline import fit_and_test
    from .tasks import ModelSpec, get_task

    params = json.loads(args.params)
    camp = _campaign(params)
    task = get_task(camp, args.task)
    spec = ModelSpec(**params["model"])
    m = fit_and_test(camp, params, task, spec, params["nominal_thicknesses_A"], args.train,
                     args.validation, args.test, args.out_json)
    score = (f"R² {m['r2_mean']:.3f} (alpha={m.get('alpha', 'none')})" if task.is_regression
             else f"accuracy {m['accuracy']:.3f} (C={m['C']:g})")
    _log(f"{task.name}/{spec.id}: {camp.baseline_name} test {score} on {m['n_test']} examples")
    return 0


def cmd_readout(args: argparse.Namespace) -> int:
    from .readout import run_readout
    from .tasks import get_task

    params = json.loads(args.params)
    camp = _campaign(params)
    task = get_task(camp, args.task)
    m = run_readout(camp, task, args.predictions, args.test, args.dataset, params,
                    args.out_json, args.out_npz, args.baseline, args.plots, progress=_log)
    groups = "; ".join(f"{g} {v:.3f}" for g, v in m["groups"].items())
    base = m.get("baseline")
    _log(f"{task.name}: {task.readout} of {m['n']} test samples: R² {m['r2_mean']:.3f}"
         + (f" (baseline {base['r2_mean']:.3f})" if base else "") + f"; {groups}")
    return 0


def cmd_predict_readout(args: argparse.Namespace) -> int:
    from .readout import run_measured_readout
    from .tasks import get_task

    params = json.loads(args.params)
    camp = _campaign(params)
    task = get_task(camp, args.task)
    r = run_measured_readout(camp, task, args.prediction, args.input, params, args.out_dir,
                             progress=_log)
    for m, v in r["methods"].items():
        _log(f"{m}: " + ", ".join(f"{n} {x:.4g} +- {s:.2g}" for n, x, s in
                                  zip(r["names"], v["values"], v["std"])))
    _log(f"readout written to {args.out_dir}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    params = json.loads(args.params) if args.params else {}
    options = {"scan_step_A": args.scan_step_A,
               "angular_sampling_mrad": args.angular_sampling_mrad,
               "energy_kV": args.energy_kV, "semiangle_mrad": args.semiangle_mrad,
               "scan_axis": args.scan_axis, "scan_shape": args.scan_shape,
               "haadf": args.haadf,
               "negative_floor": args.negative_floor,
               "window_start_A": args.window_start_A}
    r = predict(_campaign(params), args.model, args.task, args.input, args.out_dir, options,
                args.thickness_A, args.mc_samples)
    if r["kind"] == "regression":
        for i, (m, s) in enumerate(zip(r["predicted"], r["predicted_std"])):
            _log(f"example {i}: " + ", ".join(
                f"{n} {float(np.ravel(m)[j]):.4g} +- {float(np.ravel(s)[j]):.2g}"
                for j, n in enumerate(r["targets"][:len(np.ravel(m))])))
    else:
        aux = r.get("aux")  # a two-head network's regression head
        for i, (p, c) in enumerate(zip(r["probabilities"], r["predicted"])):
            more = "" if not aux else "; " + ", ".join(
                f"{n} {aux['predicted'][i][j]:.4g} +- {aux['predicted_std'][i][j]:.2g}"
                f"{' ' + u if u else ''}"
                for j, (n, u) in enumerate(zip(aux["targets"], aux["units"] or
                                               [""] * len(aux["targets"]))))
            _log(f"line {i}: {c} ({100 * max(p):.1f}%){more}")
    _log(f"predictions written to {args.out_dir}")
    return 0


def cmd_showcase(args: argparse.Namespace) -> int:
    """The campaign's showcase: simulate the image, predict on it, or draw and
    score its maps (``cbedflow.showcase``)."""
    from . import showcase

    camp = _campaign(json.loads(args.params))
    if args.step == "image":
        showcase.write_image(camp, args.out_dir, progress=_log)
        _log(f"showcase image written to {args.out_dir}")
    elif args.step == "predict":
        if not (args.model and args.task):
            raise ValueError("showcase predict needs --model and --task")
        showcase.predict_image(camp, args.model, args.task, args.image_dir, args.out_dir,
                               args.mc_samples)
        _log(f"predictions written to {args.out_dir}")
    else:
        preds = dict(p.split("=", 1) for p in args.prediction)
        score = showcase.write_maps(camp, args.image_dir, preds, args.out_png, args.out_json)
        _log(f"maps written to {args.out_png}, score to {args.out_json}: "
             + json.dumps(score["tasks"]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    out = export(args.input, args.out)
    _log(f"{args.input} exported to {out}")
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from .summary import build_summary, write_summary

    params = json.loads(args.params)
    models = [json.loads(m) for m in args.model]
    doc = build_summary(params, models)
    write_summary(doc, args.out)
    from .summary import model_line

    for task, t in doc["tasks"].items():
        for mid, m in t["models"].items():
            _log(model_line(f"{task}/{mid}", m))
            if m.get("noisy_test"):
                _log(model_line(f"{task}/{mid} (noisy test)", m["noisy_test"]))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Copy a finished campaign's summary and plots to a results folder with
    the run record (command, commit, wall time, peak memory)."""
    from .summary import publish

    plots = publish(args.results, args.measured, args.out, args.commit, args.machine)
    _log(f"published {len(plots)} plots and summary.json to {args.out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots

    if args.what == "dataset":
        _campaign(json.loads(args.params or "{}")).plot_dataset(args.dataset, args.out)
    elif args.what == "curves":
        plots.training_curves(args.history, args.out)
    elif args.what == "confusion":
        plots.confusion(args.metrics, args.out)
    elif args.what == "examples":
        plots.example_predictions(args.test, args.predictions, args.out)
    elif args.what == "reliability":
        plots.reliability(args.metrics, args.out)
    elif args.what == "overview":
        plots.accuracy_overview(args.summary, args.task, args.out)
    elif args.what == "parity":
        plots.parity(args.metrics, args.predictions, args.out)
    elif args.what == "residuals":
        plots.residuals(args.metrics, args.predictions, args.out)
    _log(f"plot written to {args.out}")
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid; valid: an integer >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cbedflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate a config file against the schema")
    v.add_argument("config")
    v.add_argument("--show", action="store_true", help="print the config with defaults")
    v.set_defaults(func=cmd_validate)

    m = sub.add_parser("simulate", help="simulate one unit (sample, part, batch) by hand")
    m.add_argument("--params", required=True, help="JSON: the campaign config")
    m.add_argument("--name", required=True, help="sample id, e.g. step-0003")
    m.add_argument("--part", required=True, help="unit part, e.g. t39")
    m.add_argument("--batch", type=int, required=True, help="batch index")
    m.add_argument("--out", required=True, help="output zarr group")
    m.set_defaults(func=cmd_simulate)

    j = sub.add_parser("simulate-job", help="a packed batch job of units (MPI ranks)")
    j.add_argument("--params", required=True, help="JSON: the campaign config")
    j.add_argument("--job", required=True, help="job id, e.g. j00003")
    j.add_argument("--units-per-job", type=int, required=True)
    j.add_argument("--ranks", type=_positive_int, default=None,
                   help="ranks the launcher starts: refuse to run in any other world size")
    j.add_argument("--manifest", required=True, help="output manifest JSON")
    j.set_defaults(func=cmd_simulate_job)

    c = sub.add_parser("collect", help="average batches and stack units into a dataset")
    c.add_argument("--params", default="{}", help="JSON: config for provenance")
    c.add_argument("--out", required=True, help="output dataset zarr group")
    c.add_argument("--campaign-units", action="store_true",
                   help="collect every unit of the campaign in --params (needs the full config)")
    c.add_argument("units", nargs="*", help="unit zarr groups")
    c.set_defaults(func=cmd_collect)
    k = sub.add_parser("crop", help="cut the campaign's examples, split by sample")
    k.add_argument("--params", required=True,
                   help="JSON: campaign, seed, split and the campaign's sections")
    k.add_argument("--task", required=True)
    k.add_argument("--dataset", required=True, help="collected dataset zarr group")
    k.add_argument("--out-dir", required=True, help="writes {train,validation,test}.zarr")
    k.set_defaults(func=cmd_crop)

    a = sub.add_parser("augment", help="the campaign's augmentations of the training split")
    a.add_argument("--params", required=True, help="JSON: campaign, seed and augment sections")
    a.add_argument("--train", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--noisy-test", action="store_true",
                   help="--train is the test split: one augmented copy of every example "
                        "(evaluate.noisy_test)")
    a.set_defaults(func=cmd_augment)

    t = sub.add_parser("train", help="train the task's network (under horovodrun/mpirun/srun)")
    t.add_argument("--params", required=True, help="JSON: campaign, seed and train sections")
    t.add_argument("--task", required=True)
    t.add_argument("--train", required=True, help="(augmented) training examples")
    t.add_argument("--validation", required=True)
    t.add_argument("--out-dir", required=True)
    t.add_argument("--ranks", type=_positive_int, default=None,
                   help="ranks the launcher starts: refuse to train in any other world size")
    t.add_argument("--walltime-min", type=float, default=None,
                   help="job walltime [min]: checkpoint and exit 75 before it "
                        "(default: CBEDFLOW_WALLTIME_S, else none)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="held-out metrics of a trained model")
    e.add_argument("--task", required=True)
    e.add_argument("--model", required=True)
    e.add_argument("--test", required=True)
    e.add_argument("--validation", default=None,
                   help="validation examples: calibrate regression intervals on them")
    e.add_argument("--out-json", required=True)
    e.add_argument("--out-predictions", required=True)
    e.add_argument("--params", default=None, help="JSON: campaign and evaluate sections")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("baseline", help="the campaign's simple baseline of a model")
    b.add_argument("--params", required=True,
                   help="JSON: campaign, seed, evaluate, model spec, nominal_thicknesses_A")
    b.add_argument("--task", required=True)
    b.add_argument("--train", required=True)
    b.add_argument("--validation", required=True)
    b.add_argument("--test", required=True)
    b.add_argument("--out-json", required=True)
    b.set_defaults(func=cmd_baseline)

    ro = sub.add_parser("readout", help="the task's readout of a model's test predictions")
    ro.add_argument("--params", required=True, help="JSON: campaign sections, seed, evaluate")
    ro.add_argument("--task", required=True)
    ro.add_argument("--predictions", required=True, help="predictions.npz of evaluate")
    ro.add_argument("--test", required=True)
    ro.add_argument("--dataset", required=True)
    ro.add_argument("--baseline", default=None, help="baseline.json of the same model")
    ro.add_argument("--plots", default=None, help="folder of the readout's figures")
    ro.add_argument("--out-json", required=True)
    ro.add_argument("--out-npz", required=True)
    ro.set_defaults(func=cmd_readout)

    pr = sub.add_parser("predict-readout",
                        help="a readout task's quantities from a prediction on measured data")
    pr.add_argument("--params", required=True, help="JSON: campaign sections, seed, evaluate")
    pr.add_argument("--task", required=True)
    pr.add_argument("--prediction", required=True, help="the folder predict wrote")
    pr.add_argument("--input", required=True, help="the measured data predict read")
    pr.add_argument("--out-dir", required=True, help="writes readout.json/.csv/.png")
    pr.set_defaults(func=cmd_predict_readout)

    r = sub.add_parser("predict", help="apply a trained model to measured data",
                       description="Apply a trained model to measured data, read by the "
                                   "campaign (lao_sto_cbed: a 4D-STEM scan as .npy, .h5 with "
                                   "dataset cbed, zarr group, EMD 1.0/py4DSTEM .h5/.emd, "
                                   "HyperSpy .hspy, NCEM/Velox .emd, Merlin .mib, EMPAD .xml, "
                                   "abTEM zarr; docs/predict.md).")
    r.add_argument("--params", default=None, help="JSON: {campaign: name} (default lao_sto_cbed)")
    r.add_argument("--model", required=True, help="models/<task>/<model>/model.keras")
    r.add_argument("--task", required=True, help="task the model was trained for")
    r.add_argument("--input", required=True, help="the data file (formats: docs/predict.md)")
    r.add_argument("--out-dir", required=True, help="predictions.json/.csv and map.png")
    r.add_argument("--scan-step-A", type=float, default=None,
                   help="probe step along the scan line [Å] (if the data lacks scan_step_A)")
    r.add_argument("--angular-sampling-mrad", type=float, default=None,
                   help="detector pixel size [mrad] (if the data lacks angular_sampling_mrad)")
    r.add_argument("--energy-kV", type=float, default=None,
                   help="beam energy [kV] (if the file lacks it; checked against the model's)")
    r.add_argument("--semiangle-mrad", type=float, default=None,
                   help="probe convergence semi-angle [mrad] (if the file lacks it; checked "
                        "against the model's)")
    r.add_argument("--scan-axis", choices=("x", "y"), default="x",
                   help="the file's scan axis that crosses the interface (default x: the fast "
                        "axis of HyperSpy-ordered files, axis 0 of (scan_x, scan_y, kx, ky))")
    r.add_argument("--scan-shape", type=int, nargs=2, default=None, metavar=("NX", "NY"),
                   help="probe positions along x (fast) and y, for Merlin files without .hdr")
    r.add_argument("--haadf", default=None,
                   help="HAADF image of the scan in its own file (.npy (scan_x, scan_y) or "
                        ".tif), if the data file has none")
    r.add_argument("--thickness-A", type=float, default=None,
                   help="sample thickness [Å] (models with a thickness input need it)")
    r.add_argument("--mc-samples", type=_positive_int, default=30, help="MC-dropout passes (>= 1)")
    r.add_argument("--window-start-A", type=float, default=None,
                   help="where the model's scan window starts along a longer scan line [Å "
                        "after the first probe position] (default: centred on the line)")
    r.add_argument("--negative-floor", type=float, default=0.0,
                   help="counts: values in [-floor, 0) are detector noise and set to 0; "
                        "anything below -floor is refused (default 0: no negative values)")
    r.set_defaults(func=cmd_predict)

    sc = sub.add_parser("showcase", help="a simulated image with known truth, read by the "
                                         "models: image, predict or maps (report)")
    sc.add_argument("step", choices=("image", "predict", "maps"))
    sc.add_argument("--params", required=True, help="JSON: the campaign's sections")
    sc.add_argument("--image-dir", help="the folder of step image (predict, maps)")
    sc.add_argument("--out-dir", help="image: the image folder; predict: its predictions")
    sc.add_argument("--model", help="predict: models/<task>/<model>/model.keras")
    sc.add_argument("--task", help="predict: the model's task")
    sc.add_argument("--mc-samples", type=_positive_int, default=1,
                    help="predict: MC-dropout passes (>= 1)")
    sc.add_argument("--prediction", action="append", default=[],
                    help="maps: TASK=DIR of step predict; repeat")
    sc.add_argument("--out-png", help="maps: the figure")
    sc.add_argument("--out-json", help="maps: the score")
    sc.set_defaults(func=cmd_showcase)

    x = sub.add_parser("export", help="a dataset or prediction (zarr) as EMD 1.0 or .hspy",
                       description="Export a labelled zarr group (results/dataset.zarr, "
                                   "predictions/*/predictions.zarr) to EMD 1.0 (.h5/.emd: "
                                   "py4DSTEM.read) or HyperSpy (.hspy: hs.load).")
    x.add_argument("--input", required=True, help="the zarr group")
    x.add_argument("--out", required=True, help="the file to write (.h5, .emd or .hspy)")
    x.set_defaults(func=cmd_export)

    u = sub.add_parser("summarize", help="all models' metrics and baselines in one JSON")
    u.add_argument("--params", required=True, help="JSON: the campaign config")
    u.add_argument("--model", action="append", default=[],
                   help="JSON {task, model, metrics, predictions, baseline}; repeat")
    u.add_argument("--out", required=True)
    u.set_defaults(func=cmd_summarize)

    q = sub.add_parser("publish", help="copy summary + plots + run record to docs/results")
    q.add_argument("--results", required=True, help="the campaign's output_dir")
    q.add_argument("--measured", action="append", required=True,
                   help="run_measured.py JSON (repeat for runs in several steps)")
    q.add_argument("--commit", default=None, help="commit the run used (default: HEAD)")
    q.add_argument("--machine", default="2 cores, 24 GiB, no GPU")
    q.add_argument("--out", required=True)
    q.set_defaults(func=cmd_publish)

    pl = sub.add_parser("plot", help="figures of the report")
    pl.add_argument("what", choices=["dataset", "curves", "confusion", "examples",
                                     "reliability", "overview", "parity", "residuals"])
    pl.add_argument("--params", default=None, help="JSON: the campaign config (dataset plot)")
    pl.add_argument("--summary")
    pl.add_argument("--task")
    pl.add_argument("--out", required=True)
    pl.add_argument("--dataset")
    pl.add_argument("--history")
    pl.add_argument("--metrics")
    pl.add_argument("--test")
    pl.add_argument("--predictions")
    pl.set_defaults(func=cmd_plot)

    y = sub.add_parser("summary", help="print where the dataset is and what it holds")
    y.add_argument("--configfile", nargs="+", default=["config/config.yaml"],
                   help="one config file, or several laid over each other in order "
                        "(as snakemake --configfile a.yaml b.yaml)")
    y.set_defaults(func=cmd_summary)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("lsf-submit", "lsf-status"):  # cluster-generic hooks, raw argv
        from . import lsf

        return (lsf.submit if argv[0] == "lsf-submit" else lsf.status)(argv[1:])
    from .config import ConfigError
    from .examples import ExampleError
    from .site import WorldSizeError
    from .storage import CorruptOutputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CorruptOutputError, ExampleError, ValueError, WorldSizeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
