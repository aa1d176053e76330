# Validates the config (schema defaults + consistency checks) before the DAG
# is built, and holds the input functions and parameter builders of the rules.

import json
import os
import sys
from pathlib import Path
from shlex import quote as shlex_quote

_PKG_DIR = str(Path(workflow.basedir) / "workflow")
if _PKG_DIR not in sys.path:
    sys.path.insert(0, _PKG_DIR)
# jobs (local, cluster or conda) import the package from the checkout
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_PKG_DIR, os.environ.get("PYTHONPATH", "")) if p
)

from cbedflow.campaigns import CampaignError, get_campaign
from cbedflow.config import SITE_ENV, ConfigError, check_splits, validate
from cbedflow.site import job_shape


def _profile_site():
    """site.yaml of the --profile this run uses, or None.

    ``--config`` on the command line replaces a profile's ``config:`` list
    (and with it ``site=<name>``), so the site is taken from the profile
    directory itself; jobs that a scheduler starts inherit it through
    $CBEDFLOW_SITE (sbatch --export=ALL, bsub copies the environment)."""
    if os.environ.get(SITE_ENV):
        return os.environ[SITE_ENV]
    profiles = []
    for i, arg in enumerate(sys.argv):
        if arg == "--profile" and i + 1 < len(sys.argv):
            profiles.append(sys.argv[i + 1])
        elif arg.startswith("--profile="):
            profiles.append(arg.split("=", 1)[1])
    if not profiles and os.environ.get("SNAKEMAKE_PROFILE"):
        profiles.append(os.environ["SNAKEMAKE_PROFILE"])
    for prof in reversed(profiles):  # the last --profile wins
        for base in (Path(prof), Path(workflow.basedir) / "profiles" / prof):
            d = base if base.is_dir() else base.parent
            if (d / "site.yaml").is_file():
                return str((d / "site.yaml").resolve())
    return None


# nested --config values arrive as strings (YAML BaseLoader): type them by the
# schema, for the command line's entries only (config files stay strict)
from snakemake.utils import update_config  # noqa: E402
from cbedflow.config import coerce_strings, load_schema  # noqa: E402

_name = config.get("campaign")
try:
    _cli_schema = load_schema(_name if isinstance(_name, str) else None)
except ConfigError as _exc:
    sys.stderr.write(f"error: {_exc}\n")
    sys.exit(2)
update_config(config, coerce_strings(dict(workflow.config_settings.config or {}), _cli_schema))

_SITE = _profile_site()
if _SITE:
    os.environ[SITE_ENV] = _SITE
try:
    _validated = validate(dict(config), default_site=_SITE)
    check_splits(_validated)  # the learning half's splits, before any job
except (ConfigError, CampaignError) as _exc:
    sys.stderr.write(f"error: {_exc}\n")
    sys.exit(2)
config.clear()
config.update(_validated)

# Rules call `python`: without conda, the interpreter running Snakemake (the
# simulation environment) comes first on PATH, so `.venv/simulate/bin/snakemake`
# works without an activated shell; training rules put the training env first.
from snakemake.settings.types import DeploymentMethod  # noqa: E402

if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    shell.prefix(f"set -euo pipefail; export PATH={shlex_quote(str(Path(sys.executable).parent))}:$PATH; ")

CAMPAIGN = get_campaign(config)
OUT = CAMPAIGN.output_dir
SIM_ENV = "../../envs/simulate-gpu.yaml" if config["device"] == "gpu" else "../../envs/simulate.yaml"


wildcard_constraints:
    job=r"j\d+",
    task=r"[a-z_]+",
    model=r"all|all-thickness-input|t[0-9A-Za-z]+",
    split=r"train|validation|test",


# keys that change how a job is launched, not what it computes
_LAUNCH_ONLY = {"site": ("name", "units_per_job", "ranks_per_job", "gpus_per_node",
                         "cpus_per_rank", "cores_per_node", "mpi_launcher",
                         "train_launcher")}


# keys that say which models (test sets) exist, not how one is trained (evaluated)
_NOT_PER_MODEL = {"train": ("variants", "by_task"), "evaluate": ("noisy_test",)}


def stage_params(*sections, task=None, **extra):
    """JSON of the config sections a stage depends on (rerun when they
    change), plus ``extra`` entries; always the campaign's name. With
    ``task``, the train section carries that task's ``train.by_task`` entry."""
    out = {"campaign": config["campaign"]}
    for k in sections:
        v = config[k]
        drop = _LAUNCH_ONLY.get(k, ()) + _NOT_PER_MODEL.get(k, ())
        if isinstance(v, dict) and drop:
            v = {kk: vv for kk, vv in v.items() if kk not in drop}
        if k == "train" and task is not None:
            v = {**v, **config["train"]["by_task"].get(task, {})}
        out[k] = CAMPAIGN.hashed_section(k, v)  # keys at their "as before" values dropped
    out.update(extra)
    return json.dumps(out, sort_keys=True)


from cbedflow.tasks import model_specs  # noqa: E402


def task_models(task):
    """Model specs of ``task`` (config train.variants)."""
    return model_specs(config["train"]["variants"].get(task, ["all"]), CAMPAIGN.thicknesses)


def model_params(wc, *sections):
    """stage_params(sections) + the model spec of wildcards (task, model)."""
    spec = {m.id: m for m in task_models(wc.task)}.get(wc.model)
    if spec is None:
        raise ValueError(f"model {wc.model!r} is not a model of task {wc.task} "
                         f"(have {', '.join(m.id for m in task_models(wc.task))})")
    return stage_params(*sections, task=wc.task, model=spec.to_dict(),
                        nominal_thicknesses_A=list(CAMPAIGN.thicknesses.values()))


#: config sections that define which units exist and what each computes
UNIT_SECTIONS = CAMPAIGN.unit_sections + CAMPAIGN.sample_sections


def sim_jobs():
    """Manifests of the packed simulation jobs."""
    from cbedflow.packing import job_ids

    return [f"{OUT}/simulations/jobs/{j}.json"
            for j in job_ids(CAMPAIGN, config["site"]["units_per_job"])]


# the shape of packed and training jobs is the site's: a profile or command
# line that sets it per rule would desynchronise the request and the launcher
_SHAPE_KEYS = ("nodes", "tasks", "gpu", "gpus", "tasks_per_gpu", "tasks_per_node",
               "cpus_per_task", "cpus_per_gpu", "mpi")
for _rule, _res in (workflow.resource_settings.overwrite_resources or {}).items():
    _bad = sorted(set(_res) & set(_SHAPE_KEYS)) if _rule in ("simulate_job", "train") else []
    if _bad:
        sys.stderr.write(
            f"error: set-resources {_rule}: {', '.join(_bad)} would override the job shape "
            "that the site defines; valid: set site.ranks_per_job, site.train_ranks, "
            "site.gpus_per_node, site.cpus_per_rank (profiles/<site>/site.yaml or "
            "--config 'site={...}') instead\n")
        sys.exit(2)

def rule_resources(name, mem_factor=1):
    """Memory [MB] and walltime [min] of rule ``name`` from the config's
    ``resources`` section (no literals in the rules; set-resources overrides)."""
    r = config["resources"][name]
    return {"mem_mb": r["mem_mb"] * mem_factor, "runtime": r["runtime_min"]}


#: what a packed simulation job and a training job ask the scheduler for
SIM_SHAPE = job_shape(config["site"], config["device"], config["site"]["ranks_per_job"])
TRAIN_SHAPE = job_shape(config["site"], config["device"], config["site"]["train_ranks"])


def sim_launcher():
    """MPI launcher prefix of a packed simulation job ('' for one rank)."""
    if SIM_SHAPE.ranks == 1:
        return ""
    return SIM_SHAPE.launcher(config["site"]["mpi_launcher"]) + " "


TRAIN_ENV = "../../envs/train.yaml"


def _train_path_prefix():
    """Local runs: put the training venv (built by `make`) first on PATH for
    the training rules. Clusters use the conda env (--sdm conda) instead."""
    venv = os.environ.get("CBEDFLOW_TRAIN_ENV", str(Path(workflow.basedir) / ".venv" / "train"))
    if Path(venv, "bin", "python").exists():
        return f"export PATH={Path(venv).resolve()}/bin:$PATH; "
    return ""


TRAIN_PATH = _train_path_prefix()


def launcher():
    """The command that starts the training ranks (from the site/profile)."""
    return TRAIN_SHAPE.launcher(config["site"]["train_launcher"])


def task_dir(task):
    return f"{OUT}/tasks/{task}"


def all_models():
    """(task, model id) of every model of the campaign."""
    return [(task, m.id) for task in config["tasks"] for m in task_models(task)]


from cbedflow.tasks import get_task  # noqa: E402


def task_figures(task):
    """Per-model figures of ``task``: classification or regression ones."""
    if get_task(CAMPAIGN, task).is_regression:
        return ("parity", "residuals", "training_curves", "example_predictions")
    return ("confusion_matrix", "training_curves", "example_predictions", "reliability")


def test_sets():
    """(path suffix under evaluation/{task}/{model}, split, label) of every test set:
    the test split, and with evaluate.noisy_test its noisy copy."""
    out = [("", "test", "clean")]
    if config["evaluate"]["noisy_test"]:
        out.append(("/noisy", "test_noisy", "noisy_test"))
    return out


def has_readout(task):
    """Whether ``task`` has a readout (rule readout)."""
    return bool(get_task(CAMPAIGN, task).readout)


def final_targets():
    targets = [f"{OUT}/plots/dataset_overview.png", f"{OUT}/summary.json"]
    for task in config["tasks"]:
        targets.append(f"{OUT}/plots/{task}/accuracy_overview.png")
    for task, model in all_models():
        targets += [f"{OUT}/plots/{task}/{model}/{name}.png" for name in task_figures(task)]
        if has_readout(task):
            targets += [f"{OUT}/evaluation/{task}/{model}{sub}/readout.json"
                        for sub, _, _ in test_sets()]
    return targets


def report_text():
    """The report's landing page: workflow/report/workflow.rst, plus the
    headline results from summary.json once it exists (written under
    .snakemake/, so `snakemake --report` after a run shows the numbers)."""
    base = Path(workflow.basedir) / "workflow" / "report" / "workflow.rst"
    summary = Path(OUT) / "summary.json"
    if not summary.exists():
        return str(base)
    from cbedflow.summary import headline_rst

    try:
        extra = headline_rst(json.loads(summary.read_text()))
    except (KeyError, ValueError) as exc:  # an older summary: the page without numbers
        sys.stderr.write(f"report: no headline from {summary} ({exc})\n")
        return str(base)
    out = Path(".snakemake") / "cbedflow-report" / "workflow.rst"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(base.read_text() + extra)
    return str(out.resolve())

