"""The conda environments (clusters) and the pip pins (local, CI) must not drift."""

import re

import pytest
import yaml

PAIRS = [
    ("simulate.yaml", ["simulate.requirements.txt"]),
    ("simulate-gpu.yaml", ["simulate-gpu.requirements.txt"]),
    ("train.yaml", ["train.requirements.txt", "train-horovod.requirements.txt"]),
]
# conda-only build tools that pip does not install
CONDA_ONLY = {"python", "pip", "cmake"}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins.update(pip_pins(path.parent / line[3:].strip()))
            continue
        name, sep, ver = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not pinned with =="
        pins[_norm(name)] = ver
    return pins


def conda_pins(path):
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for p in dep["pip"]:
                name, sep, ver = p.partition("==")
                assert sep, f"{path.name}: pip entry {p!r} is not pinned"
                pins[_norm(name)] = ver
            continue
        name, _, ver = dep.partition("=")
        if _norm(name) in CONDA_ONLY:
            continue
        assert ver, f"{path.name}: {dep!r} is not pinned"
        pins[_norm(name)] = ver
    return pins


@pytest.mark.parametrize("conda,pips", PAIRS)
def test_conda_and_pip_pins_agree(root, conda, pips):
    c = conda_pins(root / "envs" / conda)
    p = {}
    for f in pips:
        p.update(pip_pins(root / "envs" / f))
    assert c == p


def test_stage_versions_match_the_measured_constraints(root):
    sim = pip_pins(root / "envs" / "simulate.requirements.txt")
    train = pip_pins(root / "envs" / "train.requirements.txt")
    assert sim["abtem"] == "1.0.11"
    assert int(sim["numpy"].split(".")[0]) >= 2
    assert tuple(map(int, sim["zarr"].split(".")[:2])) >= (3, 1)
    assert train["tensorflow-cpu"].startswith("2.15.")
    assert int(train["numpy"].split(".")[0]) < 2
    assert train["zarr"].startswith("3.0.")
    assert pip_pins(root / "envs" / "train-horovod.requirements.txt") == {"horovod": "0.28.1"}


def test_drift_is_detected(tmp_path):
    (tmp_path / "a.yaml").write_text("dependencies: [numpy=2.4.6, {pip: [abtem==1.0.11]}]\n")
    (tmp_path / "a.txt").write_text("numpy==2.4.5\nabtem==1.0.11\n")
    assert conda_pins(tmp_path / "a.yaml") != pip_pins(tmp_path / "a.txt")
