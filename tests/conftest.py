import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

SIGMAS = {"Sr": 0.088, "Ti": 0.073, "La": 0.080, "Al": 0.075, "O": 0.090}


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def train_env() -> Path:
    """The training environment (TensorFlow + Horovod) that `make` builds.

    Its tests fail, not skip, when it is missing: run them through `make test`.
    """
    import os

    env = Path(os.environ.get("CBEDFLOW_TRAIN_ENV", ROOT / ".venv" / "train"))
    if not (env / "bin" / "horovodrun").exists():
        pytest.fail(f"training environment not found at {env} (build it with `make envs`)")
    return env
