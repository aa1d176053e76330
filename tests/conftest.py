import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

SIGMAS = {"Sr": 0.088, "Ti": 0.073, "La": 0.080, "Al": 0.075, "O": 0.090}


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
