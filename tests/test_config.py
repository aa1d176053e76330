"""The schema is the reference: defaults, types, ranges, unknown keys, consistency."""

import copy

import pytest
import yaml

from cbedflow.config import ConfigError, load, load_schema, validate


def test_defaults_fill_empty_config():
    cfg = validate({})
    assert cfg["simulation"]["phonons"]["configs"] == 2
    assert cfg["simulation"]["scan"]["positions_x"] == 13
    assert cfg["microscope"]["energy_kV"] == 200


def _leaves(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        p = f"{path}.{key}" if path else key
        yield p, sub
        yield from _leaves(sub, p)


def test_every_key_has_default_and_description():
    for path, sub in _leaves(load_schema()):
        assert "description" in sub, path
        assert "default" in sub, path
        assert "type" in sub or "enum" in sub, path


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_valid(root, name):
    load(root / "config" / name)


BAD = [
    ({"seeed": 1}, ["seeed", "valid keys"]),
    ({"structures": {"per_class": "8"}}, ["structures.per_class", "'8'", "integer"]),
    ({"structures": {"per_class": 0}}, ["structures.per_class", "0", "[1, 100000]"]),
    ({"simulation": {"sampling_A": 0.9}}, ["simulation.sampling_A", "0.9", "0.5"]),
    ({"simulation": {"scan": {"position_x": 3}}}, ["position_x", "simulation.scan"]),
    ({"device": "tpu"}, ["device", "'tpu'", "'cpu', 'gpu'"]),
    ({"structures": {"intermix_fraction": [0.4, 0.1]}}, ["intermix_fraction", "min <= max"]),
    ({"simulation": {"phonons": {"configs": 3, "batch_size": 2}}},
     ["simulation.phonons.configs", "3", "multiple"]),
    ({"structures": {"thicknesses_A": [20.0]}}, ["thicknesses_A", "20.0", "unit cells"]),
    ({"simulation": {"slice_thickness_A": 1.5}}, ["slice_thickness_A", "1.5", "divisor"]),
    ({"simulation": {"detector_max_angle_mrad": 200}}, ["detector_max_angle_mrad", "200", "mrad"]),
    ({"microscope": {"semiangle_mrad": 45}}, ["detector_max_angle_mrad", "semiangle"]),
    ({"simulation": {"phonons": {"sigmas_A": {"Sr": 0.1}}}}, ["sigmas_A", "missing"]),
    ({"microscope": {"aberrations_A": {"defocus": 10}}}, ["aberrations_A", "defocus"]),
]


@pytest.mark.parametrize("bad,words", BAD)
def test_bad_configs_named_in_one_line(bad, words):
    with pytest.raises(ConfigError) as exc:
        validate(bad)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_load_names_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"structures": {"per_class": -1}}))
    with pytest.raises(ConfigError, match=str(p)):
        load(p)


def test_validate_does_not_mutate_input():
    raw = {"structures": {"per_class": 4}}
    before = copy.deepcopy(raw)
    validate(raw)
    assert raw == before
