# Validates the config (schema defaults + consistency checks) before the DAG
# is built, and holds the input functions and parameter builders of the rules.

import json
import os
import sys
from pathlib import Path

_PKG_DIR = str(Path(workflow.basedir) / "workflow")
if _PKG_DIR not in sys.path:
    sys.path.insert(0, _PKG_DIR)
# jobs (local, cluster or conda) import the package from the checkout
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_PKG_DIR, os.environ.get("PYTHONPATH", "")) if p
)

from cbedflow.campaign import Campaign
from cbedflow.config import ConfigError, validate

try:
    _validated = validate(dict(config))
except ConfigError as _exc:
    sys.stderr.write(f"error: {_exc}\n")
    sys.exit(2)
config.clear()
config.update(_validated)

CAMPAIGN = Campaign(config)
OUT = CAMPAIGN.output_dir
SIM_ENV = "../../envs/simulate-gpu.yaml" if config["device"] == "gpu" else "../../envs/simulate.yaml"


wildcard_constraints:
    structure=r"(step|diffuse)-\d+",
    task=r"[a-z_]+",
    split=r"train|validation|test",
    thickness=r"[0-9p]+",
    batch=r"\d+",


# keys that change how a job is launched, not what it computes
_LAUNCH_ONLY = {"train": ("launcher",)}


def stage_params(*sections):
    """JSON of the config sections a stage depends on (rerun when they change)."""
    out = {}
    for k in sections:
        v = config[k]
        if isinstance(v, dict) and k in _LAUNCH_ONLY:
            v = {kk: vv for kk, vv in v.items() if kk not in _LAUNCH_ONLY[k]}
        out[k] = v
    return json.dumps(out, sort_keys=True)


def all_units():
    return CAMPAIGN.unit_paths()


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
    """The command that starts the training ranks (from the config/profile)."""
    return config["train"]["launcher"].format(ranks=config["train"]["ranks"])


def task_dir(task):
    return f"{OUT}/tasks/{task}"


def final_targets():
    targets = [f"{OUT}/plots/dataset_overview.png"]
    for task in config["tasks"]:
        targets += [
            f"{OUT}/evaluation/{task}/metrics.json",
            f"{OUT}/plots/{task}/confusion_matrix.png",
            f"{OUT}/plots/{task}/training_curves.png",
            f"{OUT}/plots/{task}/example_predictions.png",
        ]
    return targets
