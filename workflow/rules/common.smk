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
    thickness=r"[0-9p]+",
    batch=r"\d+",


def stage_params(*sections):
    """JSON of the config sections a stage depends on (rerun when they change)."""
    return json.dumps({k: config[k] for k in sections}, sort_keys=True)


def all_units():
    return CAMPAIGN.unit_paths()
