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


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import check_splits, load

    cfg = load(args.config)
    check_splits(cfg)
    print(json.dumps(cfg, indent=2) if args.show else f"{args.config}: valid")
    return 0


def cmd_structure(args: argparse.Namespace) -> int:
    """Build one structure at every thickness, one extxyz frame each."""
    from .campaign import Campaign

    out = ensure_structure(Campaign(json.loads(args.params)), args.name, Path(args.out),
                           force=True)
    _log(f"{args.name} -> {out}")
    return 0


def read_frames(path: str | Path) -> list:
    """Every frame of the structure file ``path``, thinnest first."""
    import ase.io

    frames = ase.io.read(path, index=":", format="extxyz", parallel=False)
    return sorted(frames, key=lambda f: f.info["thickness_A"])


def read_frame(path: str | Path, thickness_label: str):
    """The frame of ``path`` whose nominal thickness has ``thickness_label``."""
    from .campaign import thickness_label as label_of

    frames = read_frames(path)
    for atoms in frames:
        if label_of(atoms.info["nominal_thickness_A"]) == thickness_label:
            return atoms
    have = [label_of(a.info["nominal_thickness_A"]) for a in frames]
    raise SystemExit(f"{path}: no frame for thickness {thickness_label!r}; has {have}")


def _simulate_one(params: dict, structure: str | Path, thickness: str, batch: int,
                  out: str | Path, progress=_log) -> None:
    from .config import config_hash
    from .packing import unit_key
    from .simulate import SimulationSettings, simulate_unit, unit_seeds

    from .campaign import SERIES

    settings = SimulationSettings.from_config(params)
    series = None
    if thickness == SERIES:  # every thickness from one propagation (exit planes)
        *series, atoms = read_frames(structure)
    else:
        atoms = read_frame(structure, thickness)
    bs = params["simulation"]["phonons"]["batch_size"]
    seeds = unit_seeds(params["seed"], atoms.info["structure"],
                       int(atoms.info["thickness_cells"]), batch, bs)
    exits = (" with exit planes at " + ", ".join(f"{f.info['thickness_A']:.2f}" for f in series)
             + " Å") if series else ""
    progress(f"simulate {atoms.info['structure']} t={atoms.info['thickness_A']:.2f} Å{exits} "
             f"batch {batch} ({bs} configurations, grid {settings.gpts(atoms)})")
    simulate_unit(atoms, settings, seeds, out, progress=progress, series=series, provenance={
        "config_hash": config_hash(params),
        "unit_key": unit_key(params, atoms.info["structure"], thickness),
        "seed": params["seed"], "batch": batch,
    })


def cmd_simulate(args: argparse.Namespace) -> int:
    _simulate_one(json.loads(args.params), args.structure, args.thickness, args.batch, args.out)
    return 0


def structure_key(camp, name: str) -> str:
    """Hash of everything a structure file holds: its spec, the geometry and
    the thicknesses."""
    from dataclasses import asdict

    from .config import config_hash

    _, spec = camp.by_name[name]
    s = camp.config["structures"]
    return config_hash({"spec": asdict(spec), "geometry": asdict(camp.geometry),
                        "decay": s["intermix_decay"], "thicknesses": sorted(camp.thicknesses),
                        "series": camp.in_series(spec)})


def ensure_structure(camp, name: str, path: Path | None = None, force: bool = False) -> Path:
    """The structure file of ``name`` (all thicknesses, labels in each frame's
    info), built and saved atomically if missing, if built from other settings
    (its ``structure_key`` differs) or if ``force``."""
    import ase.io

    from .storage import atomic_file
    from .structures import build_series, build_structure

    path = Path(camp.structure_path(name)) if path is None else path
    key = structure_key(camp, name)
    if not force and path.exists():
        try:
            first = ase.io.read(path, index=0, format="extxyz", parallel=False)
            force = first.info.get("structure_key") != key
        except Exception:  # unreadable: rebuild
            force = True
    if force or not path.exists():
        _, spec = camp.by_name[name]
        decay = camp.config["structures"]["intermix_decay"]
        if camp.in_series(spec):  # thinner samples are cuts of the thickest
            frames = build_series(spec, camp.geometry, list(camp.thicknesses.values()), decay)
        else:
            frames = [build_structure(spec, camp.geometry, t, decay)
                      for t in camp.thicknesses.values()]
        for f in frames:
            f.info["structure_key"] = key
        with atomic_file(path) as tmp:
            # parallel=False: under MPI, ASE would otherwise let only world rank 0 write
            ase.io.write(tmp, frames, format="extxyz", parallel=False)
    return path


def cmd_simulate_job(args: argparse.Namespace) -> int:
    """One packed batch job: its units spread over the MPI ranks."""
    from .campaign import Campaign
    from .packing import job_units, mpi_comm, run_job, unit_key, write_manifest

    from .simulate import check_device
    from .site import check_world

    params = json.loads(args.params)
    # one rank needs no MPI: under a one-task srun (the Slurm jobstep's
    # wrapper) the PMI descriptor is not passed on to this process, and MPI
    # initialisation would fail where the site sets a PMI (MpiDefault=pmi2)
    comm = None if args.ranks == 1 else mpi_comm()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    # before any work: ranks that are not one world would each do every unit
    if args.ranks is not None:
        check_world(size, args.ranks, f"job {args.job}", "mpi_launcher")
    if rank == 0:
        _log(f"job {args.job}: one MPI world of {size} rank(s)")
    check_device(params["device"])
    camp = Campaign(params)
    units = job_units(camp, args.units_per_job, args.job)
    if rank == 0:
        _log(f"job {args.job}: {len(units)} units on {size} rank(s)")

    def simulate_one(name, thickness, batch, out):
        path = ensure_structure(camp, name)
        _simulate_one(params, path, thickness, batch, out,
                      progress=lambda m: _log(f"rank {rank}: {m}"))

    try:
        records = run_job(camp, units, simulate_one, rank, size,
                          key=lambda name, t: unit_key(params, name, t), progress=_log)
    except BaseException:
        if comm is not None and size > 1:  # a failed rank must not leave the others waiting
            import traceback

            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            comm.Abort(1)
        raise
    gathered = comm.gather(records, root=0) if comm else [records]
    if rank == 0:
        flat = [r for part in gathered for r in part]
        write_manifest(args.manifest, args.job, flat, size)
        by_rank = {}
        for r in flat:
            by_rank.setdefault(r["rank"], []).append(r["status"])
        _log(f"job {args.job} done: " + ", ".join(
            f"rank {k}: {v.count('simulated')} simulated, {len(v) - v.count('simulated')} "
            "skipped" for k, v in sorted(by_rank.items())))
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import collect
    from .config import config_hash

    params = json.loads(args.params)
    units = list(args.units)
    if args.campaign_units:
        from .campaign import Campaign

        units += Campaign(params).unit_paths()
    collect(units, args.out, progress=_log, provenance={
        "config_hash": config_hash(params), "seed": params.get("seed"),
    })
    print(f"dataset written to {Path(args.out).resolve()}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """Print where the campaign's dataset is and what it holds."""
    import numpy as np
    import zarr

    from .campaign import Campaign
    from .config import load

    camp = Campaign(load(args.configfile))
    path = Path(camp.dataset_path)
    if not path.exists():
        print(f"no dataset yet at {path.resolve()}: run snakemake first", file=sys.stderr)
        return 1
    ds = zarr.open_group(str(path), mode="r")
    rough = ds["rough"][...]
    print(f"dataset: {path.resolve()}")
    print(f"  cbed {ds['cbed'].shape} float32, dims {ds.attrs['dims']}")
    print(f"  {int(np.sum(rough == 1))} step (rough) + {int(np.sum(rough == 0))} diffuse samples, "
          f"thicknesses {sorted(set(np.round(ds['thickness_A'][...].astype(float), 2).tolist()))} Å")
    report = Path(camp.output_dir) / "report.html"
    if report.exists():
        print(f"report: {report.resolve()}")
    for line in accuracy_lines(camp):
        print(line)
    return 0


def accuracy_lines(camp) -> list[str]:
    """One line per trained model: held-out accuracy of the network (and its
    MC-dropout mean) beside the baseline's on the same test set, from
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
            met = json.loads((d / "metrics.json").read_text())
            line = (f"  {task}/{spec.id}: held-out accuracy CNN {met['accuracy']:.3f}")
            mc = (met.get("mc_dropout") or {}).get("accuracy")
            if mc is not None:
                line += f" (MC dropout {mc:.3f})"
            if (d / "baseline.json").exists():
                base = json.loads((d / "baseline.json").read_text())
                line += f", baseline {base['accuracy']:.3f}"
            lines.append(line + f" on {met['n_test']} examples from "
                         f"{met['n_test_structures']} test structures")
    return lines


def cmd_crop(args: argparse.Namespace) -> int:
    from .examples import crop_and_split
    from .tasks import get_task

    params = json.loads(args.params)
    crop_and_split(args.dataset, get_task(args.task), args.out_dir,
                   params["crop"]["pattern_px"], params["crop"]["binning"],
                   params["split"], params["seed"], progress=_log)
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from .examples import augment

    params = json.loads(args.params)
    a = params["augment"]
    augment(args.train, args.out, a["copies"], tuple(a["dose_e_per_pattern"]),
            a["max_rotation_deg"], params["seed"], a["keep_original"], progress=_log)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .learn import train
    from .tasks import get_task

    params = json.loads(args.params)
    task = get_task(args.task)
    p = dict(params["train"], task=task.name, n_classes=task.n_classes, seed=params["seed"])
    p.pop("variants", None)  # which models exist is the workflow's business
    if "model" in params:
        p.update(model=params["model"],
                 nominal_thicknesses_A=params.get("nominal_thicknesses_A", []))
    return train(p, args.train, args.validation, args.out_dir,
                 walltime_s=args.walltime_min * 60 if args.walltime_min else None,
                 expected_ranks=args.ranks)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .learn import evaluate
    from .tasks import get_task

    task = get_task(args.task)
    ev = json.loads(args.params)["evaluate"] if args.params else {}
    m = evaluate(args.model, args.test, list(task.classes), args.out_json, args.out_predictions,
                 mc_samples=ev.get("mc_dropout_samples", 30),
                 bins=ev.get("calibration_bins", 10), ordinal=task.ordinal)
    _log(f"{task.name}/{m['model']['id']}: test accuracy {m['accuracy']:.3f} "
         f"(MC dropout {m['mc_dropout']['accuracy']:.3f}, ECE "
         f"{m['mc_dropout']['calibration']['ece']:.3f}) on {m['n_test']} examples "
         f"({m['n_test_structures']} structures)")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from .baseline import fit_and_test
    from .tasks import ModelSpec, get_task

    params = json.loads(args.params)
    task = get_task(args.task)
    spec = ModelSpec(**params["model"])
    m = fit_and_test(task, spec, params["nominal_thicknesses_A"], args.train, args.validation,
                     args.test, params["evaluate"]["baseline_rings"], params["seed"],
                     args.out_json)
    _log(f"{task.name}/{spec.id}: ring-feature logistic regression test accuracy "
         f"{m['accuracy']:.3f} (C={m['C']:g}) on {m['n_test']} examples")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    r = predict(args.model, args.task, args.input, args.out_dir, args.scan_step_A,
                args.angular_sampling_mrad, args.thickness_A, args.mc_samples,
                args.negative_floor)
    for i, (p, c) in enumerate(zip(r["probabilities"], r["predicted"])):
        _log(f"line {i}: {c} ({100 * max(p):.1f}%)")
    _log(f"predictions written to {args.out_dir}")
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from .summary import build_summary, write_summary

    params = json.loads(args.params)
    models = [json.loads(m) for m in args.model]
    doc = build_summary(params, models)
    write_summary(doc, args.out)
    for task, t in doc["tasks"].items():
        for mid, m in t["models"].items():
            _log(f"{task}/{mid}: CNN {m['cnn']['accuracy']:.3f} (MC dropout "
                 f"{m['cnn']['mc_dropout_accuracy']:.3f}, ECE {m['cnn']['mc_dropout_ece']:.3f}), "
                 f"baseline {m['baseline']['accuracy']:.3f}, per thickness "
                 f"{m['cnn']['per_thickness_accuracy']}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Copy a finished campaign's summary and plots to a results folder with
    the run record (command, commit, wall time, peak memory)."""
    import shutil
    import subprocess

    from .storage import write_json
    from .summary import check_summary

    res, out = Path(args.results), Path(args.out)
    summary = json.loads((res / "summary.json").read_text())
    check_summary(summary)
    runs = [json.loads(Path(m).read_text()) for m in args.measured]
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for png in sorted((res / "plots").rglob("*.png")):
        name = "_".join(png.relative_to(res / "plots").parts)
        shutil.copyfile(png, out / name)
        plots.append(name)
    shutil.copyfile(res / "summary.json", out / "summary.json")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    record = {
        "command": runs[-1]["command"],
        "commit": args.commit or commit,
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
        "peak_rss_GiB": max(r["peak_rss_GiB"] for r in runs),
        "steps": runs,
        "machine": args.machine,
        "plots": plots,
    }
    write_json(out / "run.json", record)
    _log(f"published {len(plots)} plots and summary.json to {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots

    if args.what == "dataset":
        plots.dataset_overview(args.dataset, args.out, args.semiangle_mrad)
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

    s = sub.add_parser("structure", help="build one structure at every thickness")
    s.add_argument("--params", required=True, help="JSON: seed and structures sections")
    s.add_argument("--name", required=True, help="structure id, e.g. step-0003")
    s.add_argument("--out", required=True, help="output .extxyz")
    s.set_defaults(func=cmd_structure)

    m = sub.add_parser("simulate", help="simulate one (structure, thickness, batch) unit")
    m.add_argument("--params", required=True,
                   help="JSON: seed, device, microscope and simulation sections")
    m.add_argument("--structure", required=True, help="structure .extxyz")
    m.add_argument("--thickness", required=True, help="thickness label, e.g. 39")
    m.add_argument("--batch", type=int, required=True, help="phonon batch index")
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
    k = sub.add_parser("crop", help="crop patterns, form examples, split by structure")
    k.add_argument("--params", required=True, help="JSON: seed, crop and split sections")
    k.add_argument("--task", required=True)
    k.add_argument("--dataset", required=True, help="collected dataset zarr group")
    k.add_argument("--out-dir", required=True, help="writes {train,validation,test}.zarr")
    k.set_defaults(func=cmd_crop)

    a = sub.add_parser("augment", help="Poisson noise and rotations of the training split")
    a.add_argument("--params", required=True, help="JSON: seed and augment sections")
    a.add_argument("--train", required=True)
    a.add_argument("--out", required=True)
    a.set_defaults(func=cmd_augment)

    t = sub.add_parser("train", help="train the 3D-CNN (run under horovodrun/mpirun/srun)")
    t.add_argument("--params", required=True, help="JSON: seed and train sections")
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
    e.add_argument("--out-json", required=True)
    e.add_argument("--out-predictions", required=True)
    e.add_argument("--params", default=None, help="JSON: the evaluate section")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("baseline", help="ring-feature logistic-regression baseline of a model")
    b.add_argument("--params", required=True,
                   help="JSON: seed, evaluate, model spec, nominal_thicknesses_A")
    b.add_argument("--task", required=True)
    b.add_argument("--train", required=True)
    b.add_argument("--validation", required=True)
    b.add_argument("--test", required=True)
    b.add_argument("--out-json", required=True)
    b.set_defaults(func=cmd_baseline)

    r = sub.add_parser("predict", help="apply a trained model to new 4D-STEM data",
                       description="Apply a trained model to new 4D-STEM data (scan_x, scan_y, "
                                   "kx, ky): zarr group (array cbed), .npy or .h5 (dataset cbed).")
    r.add_argument("--model", required=True, help="models/<task>/<model>/model.keras")
    r.add_argument("--task", required=True, help="task the model was trained for")
    r.add_argument("--input", required=True, help="the data (.npy, .h5 or zarr group)")
    r.add_argument("--out-dir", required=True, help="predictions.json/.csv and map.png")
    r.add_argument("--scan-step-A", type=float, default=None,
                   help="probe step along the scan line [Å] (if the data lacks scan_step_A)")
    r.add_argument("--angular-sampling-mrad", type=float, default=None,
                   help="detector pixel size [mrad] (if the data lacks angular_sampling_mrad)")
    r.add_argument("--thickness-A", type=float, default=None,
                   help="sample thickness [Å] (models with a thickness input need it)")
    r.add_argument("--mc-samples", type=_positive_int, default=30, help="MC-dropout passes (>= 1)")
    r.add_argument("--negative-floor", type=float, default=0.0,
                   help="counts: values in [-floor, 0) are detector noise and set to 0; "
                        "anything below -floor is refused (default 0: no negative values)")
    r.set_defaults(func=cmd_predict)

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
                                     "reliability", "overview"])
    pl.add_argument("--summary")
    pl.add_argument("--task")
    pl.add_argument("--out", required=True)
    pl.add_argument("--dataset")
    pl.add_argument("--semiangle-mrad", type=float, default=20.0)
    pl.add_argument("--history")
    pl.add_argument("--metrics")
    pl.add_argument("--test")
    pl.add_argument("--predictions")
    pl.set_defaults(func=cmd_plot)

    y = sub.add_parser("summary", help="print where the dataset is and what it holds")
    y.add_argument("--configfile", default="config/config.yaml")
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
