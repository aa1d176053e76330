"""The schema is the reference: defaults, types, ranges, unknown keys, consistency."""

import copy
import os
import subprocess
import sys
from pathlib import Path

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
    ({"simulation": {"sampling_A": 0.1, "haadf": {"outer_mrad": 120}}},
     ["simulation.haadf.outer_mrad", "120", "83.6 mrad"]),
    ({"simulation": {"haadf": {"inner_mrad": 15}}}, ["simulation.haadf.inner_mrad", "15",
                                                     "semiangle_mrad=20"]),
    ({"crop": {"window_positions": 13, "jitter_positions": 1}},
     ["crop.window_positions", "13", "positions_x=13"]),
    ({"simulation": {"scan": {"positions_x": 17}}, "crop": {"window_positions": 13,
      "jitter_positions": 2, "train_windows": 6}}, ["crop.train_windows", "6", "1..5"]),
    ({"simulation": {"haadf": {"inner_mrad": 80, "outer_mrad": 70}}},
     ["simulation.haadf.inner_mrad", "80", "inner < outer"]),
    ({"train": {"by_task": {"step_posn": {"dropout": 0.3}}}},
     ["train.by_task", "'step_posn'", "'step_position'"]),
    ({"train": {"by_task": {"step_position": {"dropot": 0.3}}}},
     ["dropot", "train.by_task.step_position", "dropout"]),
    ({"train": {"by_task": {"step_position": {"variants": ["all"]}}}},
     ["variants", "train.by_task.step_position"]),
    ({"structures": {"step_model": "ramp"}}, ["structures.step_model", "'ramp'", "'conformal'"]),
    ({"crop": {"jitter_stage": "never"}}, ["crop.jitter_stage", "'never'", "'before_alignment'"]),
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


def test_config_files_lay_over_each_other_as_snakemake_merges_them(root, tmp_path):
    """`load([a, b])` is what `snakemake --configfile a b` sees: b's keys
    replace a's, mappings merge key by key (tiny-72 keeps the tiny config's
    step classes and changes only the count)."""
    base, top = root / "config" / "config.yaml", root / "config" / "tiny-72.yaml"
    both = load([base, top])
    alone = load(base)
    assert both["structures"]["per_class"] == 72 != alone["structures"]["per_class"]
    assert both["structures"]["step_classes"] == alone["structures"]["step_classes"]
    assert both["output_dir"] == "results-tiny72"
    assert both["train"]["optimizer"] == "adam" and both["crop"]["train_mirror"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"structures": {"per_class": 0}}))
    with pytest.raises(ConfigError, match="per_class") as err:
        load([base, bad])
    assert str(bad) in str(err.value) and len(str(err.value).splitlines()) == 1

def test_validate_does_not_mutate_input():
    raw = {"structures": {"per_class": 4}}
    before = copy.deepcopy(raw)
    validate(raw)
    assert raw == before


def test_error_lines_keep_decimal_numbers_of_the_description():
    from cbedflow.config import first_sentence

    assert first_sentence("Step (paper 0.01). More text.") == "Step (paper 0.01)"
    assert first_sentence("Ends with 3.5") == "Ends with 3.5"
    with pytest.raises(ConfigError) as exc:
        validate({"simulation": {"sampling_A": 0.9}})
    desc = load_schema()["properties"]["simulation"]["properties"]["sampling_A"]["description"]
    assert f"({first_sentence(desc)})" in str(exc.value)
    assert not str(exc.value).endswith("(paper 0)")


def test_yaml_syntax_error_and_empty_file_are_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 1\nstructures: {per_class: 4\n")
    with pytest.raises(ConfigError, match=r"c.yaml: YAML syntax error at line \d+, column \d+"):
        load(p)
    p.write_text("# only a comment\n")
    with pytest.raises(ConfigError, match=r"c.yaml: the config file is empty"):
        load(p)
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read the config file"):
        load(tmp_path / "nope.yaml")


def test_validate_command_prints_one_line(tmp_path, root):
    import subprocess
    import sys

    p = tmp_path / "c.yaml"
    p.write_text("seed: [1\n")
    r = subprocess.run([sys.executable, "-m", "cbedflow", "validate", str(p)],
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {p}: YAML syntax error")


@pytest.mark.parametrize("change, words", [
    ({"split": {"validation": 0.5, "test": 0.5}},
     ["'split'", "task step_position", "'k=3' has 3 sample(s), leaving validation 0"]),
    ({"structures": {"per_class": 1}},
     ["task rough_vs_diffuse", "'diffuse' has 1 sample(s)", "validation 0, test 0"]),
])
def test_every_split_gets_every_class_before_any_job(root, change, words):
    from cbedflow.config import check_splits

    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    for key, value in change.items():
        cfg[key] = dict(cfg.get(key, {}), **value)
    with pytest.raises(ConfigError) as exc:
        check_splits(validate(cfg))
    for w in words:
        assert w in str(exc.value), str(exc.value)
    check_splits(load(root / "config" / "config.yaml"))
    check_splits(load(root / "config" / "paper.yaml"))


def test_command_line_strings_are_typed_by_the_schema():
    from cbedflow.config import coerce_strings

    cli = {"train": {"epochs": "5", "learning_rate": "0.01", "keep_best": "false"},
           "predict": {"angular_sampling_mrad": "1.6", "model": "t78", "thickness_A": "null"},
           "structures": {"y_repeats": "null", "thicknesses_A": ["39", "78.5"]},
           "simulation": {"phonons": {"sigmas_A": {"Sr": "0.1"}}}}
    got = coerce_strings(cli, load_schema())
    assert got["train"] == {"epochs": 5, "learning_rate": 0.01, "keep_best": False}
    assert got["predict"] == {"angular_sampling_mrad": 1.6, "model": "t78", "thickness_A": None}
    assert got["structures"] == {"y_repeats": None, "thicknesses_A": [39, 78.5]}
    assert got["simulation"]["phonons"]["sigmas_A"] == {"Sr": 0.1}
    # not a number: left as it is, and the schema names it
    bad = coerce_strings({"train": {"epochs": "five"}}, load_schema())
    with pytest.raises(ConfigError, match=r"train.epochs': value 'five'"):
        validate(bad)


def test_site_from_profile_with_overrides(root):
    prof = root / "profiles" / "frontier" / "site.yaml"
    cfg = validate({}, default_site=prof)
    assert cfg["site"]["name"] == "frontier" and cfg["site"]["ranks_per_job"] == 32
    cfg = validate({"site": {"ranks_per_job": 8}}, default_site=prof)
    assert cfg["site"]["name"] == "frontier" and cfg["site"]["ranks_per_job"] == 8
    assert cfg["site"]["cpus_per_rank"] == 7
    cfg = validate({"site": {"name": "perlmutter", "train_ranks": 4}}, default_site=prof)
    assert cfg["site"]["gpus_per_node"] == 4 and cfg["site"]["train_ranks"] == 4
    cfg = validate({"site": "summit"}, default_site=prof)  # a named site wins
    assert cfg["site"]["name"] == "summit"
    cfg = validate({"site": {"name": "mysite", "ranks_per_job": 3}}, default_site=prof)
    assert cfg["site"]["gpus_per_node"] == 0  # a site of one's own is given whole


def test_tiny_config_comments_state_its_numbers(root):
    """The tiny config's comments name its held-out line scans and units."""
    import re

    from cbedflow.campaigns import get_campaign as Campaign
    from cbedflow.examples import split_counts

    text = (root / "config" / "config.yaml").read_text()
    cfg = load(root / "config" / "config.yaml")
    n_test = split_counts(cfg["structures"]["per_class"], cfg["split"])[0]
    lines = 2 * n_test * cfg["simulation"]["scan"]["positions_y"]
    assert f"{n_test} + {n_test} held-out structures = {lines} test line scans" in text
    units = len(Campaign(cfg).units())
    m = re.search(r"(\d+) units in (\d+) packed jobs", text)
    assert m and int(m.group(1)) == units
    assert int(m.group(2)) == -(-units // validate({"site": "local"})["site"]["units_per_job"])


@pytest.mark.slow
def test_train_by_task_changes_only_that_tasks_training(root, tmp_path):
    """train.by_task: the step-position models train with their own settings
    (the train jobs' parameters), every other task with the common ones, and
    the override is not filled with defaults."""
    import yaml

    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"train": {"by_task": {"step_position": {
        "dropout": 0.35, "conv_filters": [4, 8]}}}}))
    assert validate(yaml.safe_load(over.read_text()))["train"]["by_task"] == {
        "step_position": {"dropout": 0.35, "conv_filters": [4, 8]}}
    bindir = Path(sys.executable).parent
    r = subprocess.run([str(bindir / "snakemake"), "-s", str(root / "Snakefile"), "-n", "-p",
                        "--configfile", str(root / "config" / "config.yaml"), str(over)],
                       cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    train = [ln for ln in out.splitlines() if "-m cbedflow train " in ln]
    assert len(train) == 3
    for ln in train:
        mine = "--task step_position" in ln
        assert ('"dropout": 0.35' in ln) is mine and ('"conv_filters": [4, 8]' in ln) is mine
        assert '"by_task"' not in ln
