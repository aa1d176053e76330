"""The campaign seam: generic stages know no campaign; a toy campaign defined
here (tests/toy_campaign.py) runs the whole DAG through Snakemake and two
Horovod ranks; the registry refuses unknown campaigns in one line."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from conftest import ROOT, train_env

#: The generic stages (and the modules they are made of).
GENERIC = ["packing", "collect", "examples", "learn.data", "learn.networks", "learn.loop",
           "learn.evaluate", "learn.manifest", "metrics", "baseline", "summary", "plots",
           "predict", "tasks", "storage", "site", "distributed", "config", "provenance",
           "showcase"]

#: Words of the LAO/STO 4D-STEM campaign that no generic module may use.
CAMPAIGN_WORDS = re.compile(
    r"LaAlO|SrTiO|\bLAO\b|\bSTO\b|LAO/STO|cbed(?!flow)|4D-STEM|step_k|step.depth|"
    r"step.position|step.class|buried step|intermix|\brough\b|diffuse|mrad", re.IGNORECASE)


def _source(module: str) -> str:
    path = ROOT / "workflow" / "cbedflow" / (module.replace(".", "/") + ".py")
    return path.read_text()


@pytest.mark.parametrize("module", GENERIC)
def test_generic_module_knows_no_campaign(module):
    text = _source(module)
    hits = sorted({m.group(0) for m in CAMPAIGN_WORDS.finditer(text)})
    assert not hits, f"cbedflow.{module} mentions {hits}"
    code = (f"import sys; import cbedflow.{module}; "
            "print([m for m in sys.modules if m.startswith('cbedflow.campaigns.')])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "workflow")), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", f"cbedflow.{module} imports {r.stdout}"


def test_the_word_check_finds_the_campaign():
    """The check above is not vacuous: the campaign's own module trips it."""
    assert CAMPAIGN_WORDS.search(_source("campaigns/lao_sto_cbed/__init__"))


def test_unknown_campaign_is_one_line(tmp_path):
    from cbedflow.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"'campaign'.*'no_such'.*valid: lao_sto_cbed"):
        validate({"campaign": "no_such"})
    with pytest.raises(ConfigError, match=r"nowhere:Thing.*cannot be imported"):
        validate({"campaign": "nowhere:Thing"})
    with pytest.raises(ConfigError, match=r"'campaign'.*3.*valid"):
        validate({"campaign": 3})


def test_every_campaign_schema_has_descriptions_and_defaults():
    """The merged schema stays the reference: every leaf key of every
    campaign section has a description and a default."""
    from cbedflow.config import load_schema

    def walk(schema, path):
        for key, sub in schema.get("properties", {}).items():
            where = f"{path}.{key}" if path else key
            assert sub.get("description"), f"{where} has no description"
            assert "default" in sub, f"{where} has no default"
            if sub.get("type") == "object":
                walk(sub, where)

    sys.path.insert(0, str(ROOT / "tests"))
    for name in ("lao_sto_cbed", "toy_campaign:ToyCampaign"):
        walk(load_schema(name), "")


def test_label_set_is_declared_once():
    """The LAO/STO labels appear in one place: the campaign's declaration."""
    labels = ("step_depth_A", "intermix_fraction")
    pkg = ROOT / "workflow" / "cbedflow"
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        for lab in labels:
            if f'Label("{lab}"' in text:
                assert path.name == "__init__.py" and "lao_sto_cbed" in str(path)


def test_regression_metrics_and_coverage():
    from cbedflow.metrics import interval_coverage, regression_metrics, uncertainty_scale

    rng = np.random.default_rng(0)
    y = rng.normal(size=(4000, 2))
    pred = y + rng.normal(scale=0.5, size=y.shape)
    m = regression_metrics(y, pred, ["a", "b"], ["pm", "pm"])
    assert m["targets"]["a"]["rmse"] == pytest.approx(0.5, rel=0.05)
    assert m["targets"]["a"]["mae"] == pytest.approx(0.5 * np.sqrt(2 / np.pi), rel=0.05)
    assert m["targets"]["b"]["r2"] == pytest.approx(1 - 0.25, abs=0.03)
    # honest intervals cover 68 / 95 %; too narrow ones are found and rescaled
    cov = interval_coverage(y, pred, np.full_like(y, 0.5))
    assert cov["68"] == pytest.approx(0.683, abs=0.02) and cov["95"] == pytest.approx(0.95, abs=0.01)
    s = uncertainty_scale(y, pred, np.full_like(y, 0.25))
    assert s == pytest.approx(2.0, rel=0.05)
    assert interval_coverage(y, pred, np.full_like(y, 0.25) * s)["68"] == pytest.approx(0.683,
                                                                                     abs=0.01)


def _snakemake(args, out, timeout=600, config=()):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"),
               CBEDFLOW_TRAIN_ENV=str(train_env()))
    env.pop("SNAKEMAKE_PROFILE", None)
    return subprocess.run([str(ROOT / ".venv" / "simulate" / "bin" / "snakemake"),
                           "--profile", "profiles/local", "--configfile", "tests/toy/config.yaml",
                           "--config", f"output_dir={out}", *config, *args],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def _summary_cli(tmp_path, out, tasks: str | None = None):
    """`cbedflow summary` (the last step of `make run`) on the toy config
    with ``output_dir`` = ``out`` (and ``tasks``); the finished process."""
    text = (ROOT / "tests" / "toy" / "config.yaml").read_text().replace(
        "output_dir: results-toy", f"output_dir: {out}")
    if tasks:
        text = text.replace("tasks: [shape, offset]", f"tasks: {tasks}")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'tests'}{os.pathsep}{ROOT / 'workflow'}")
    s = subprocess.run([sys.executable, "-m", "cbedflow", "summary", "--configfile", str(cfg)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert s.returncode == 0, s.stderr
    return s


def test_toy_campaign_end_to_end(tmp_path):
    """Every generic stage of a campaign that lives outside the package:
    packed units of several samples, collect, examples, augment, 2-rank
    Horovod training of a 2D CNN (classification and regression), evaluation
    with MC dropout, baselines, summary, plots and `cbedflow summary`."""
    out = tmp_path / "toy"
    t0 = time.perf_counter()
    r = _snakemake([], out)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-4000:]
    print(f"toy campaign end to end: {wall:.1f} s")

    ds = zarr.open_group(str(out / "dataset.zarr"), mode="r")
    assert ds["image"].shape == (200, 16, 16)
    assert list(ds.attrs["labels"]) == ["elongated", "x0_pm", "y0_pm", "thickness_A",
                                        "structure_index"]
    assert ds.attrs["units"]["x0_pm"] == "pm"

    for task in ("shape", "offset"):
        logs = (out / "logs" / "train" / task / "all.log").read_text()
        assert "hvd rank=1 size=2" in logs and "hvd rank=0 size=2" in logs
    summary = json.loads((out / "summary.json").read_text())
    shape = summary["tasks"]["shape"]["models"]["all"]
    offset = summary["tasks"]["offset"]["models"]["all"]
    assert summary["tasks"]["offset"]["kind"] == "regression"
    # the column's shape and offset are learnable: far better than chance / the mean
    assert shape["cnn"]["accuracy"] > 0.8, shape["cnn"]["accuracy"]
    assert shape["baseline"]["accuracy"] > 0.8
    assert offset["cnn"]["r2_mean"] > 0.5, offset["cnn"]["targets"]
    assert offset["baseline"]["r2_mean"] > 0.8  # moments locate a column well
    assert set(offset["cnn"]["targets"]) == {"x0_pm", "y0_pm"}
    assert offset["cnn"]["targets"]["x0_pm"]["unit"] == "pm"
    cov = offset["cnn"]["mc_dropout_calibrated_coverage"]
    assert 0.3 < cov["68"] <= 1 and cov["68"] <= cov["95"]
    for name in ("parity", "residuals", "training_curves", "example_predictions"):
        assert (out / "plots" / "offset" / "all" / f"{name}.png").stat().st_size > 5000
    for name in ("confusion_matrix", "reliability", "example_predictions"):
        assert (out / "plots" / "shape" / "all" / f"{name}.png").stat().st_size > 5000

    # `make run`'s last step prints every model beside its baseline
    s = _summary_cli(tmp_path, out)
    assert re.search(r"shape/all: held-out accuracy CNN \d\.\d{3} \(MC dropout \d\.\d{3}\), "
                     r"baseline \d\.\d{3}", s.stdout), s.stdout
    assert re.search(r"offset/all: network R² -?\d\.\d+, baseline -?\d\.\d+; x0_pm: R²",
                     s.stdout), s.stdout
    assert "not evaluated" not in s.stdout

    # nothing is recomputed on a rerun
    again = _snakemake(["-n"], out)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # the report's landing page: both kinds of task, with the baseline beside each
    from cbedflow.summary import headline_rst

    rst = headline_rst(summary)
    assert re.search(r"shape +all +\d\.\d{3} +\d\.\d{3} +\d\.\d{3} +40", rst), rst
    assert re.search(r"offset +all +x0_pm +\d\.\d{3} +[\d.]+ pm +\d\.\d{3} +"
                     r"\d\.\d\d/\d\.\d\d +40", rst), rst
    report = tmp_path / "report.html"
    rep = _snakemake(["--report", str(report)], out)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert report.stat().st_size > 100_000

    # evaluate.noisy_test adds the noisy test split's evaluations to the trained models:
    # nothing trained or evaluated before reruns, every model gets a noisy row
    models = {p: p.stat().st_mtime_ns for p in (out / "models").rglob("model.keras")}
    clean = {p: p.stat().st_mtime_ns for p in (out / "evaluation").rglob("*.json")}
    noisy = _snakemake([], out, config=["evaluate={mc_dropout_samples: 10, noisy_test: true}"])
    assert noisy.returncode == 0, noisy.stderr[-4000:]
    ran = set(re.findall(r"rule (\w+):", noisy.stdout + noisy.stderr))
    assert ran == {"noisy_test", "evaluate_noisy", "baseline_noisy", "summarize", "plot_overview",
                   "all"}, ran  # plot_overview draws the summary
    assert {p: p.stat().st_mtime_ns for p in models} == models
    assert {p: p.stat().st_mtime_ns for p in clean} == clean
    doc = json.loads((out / "summary.json").read_text())
    for task in ("shape", "offset"):
        n = doc["tasks"][task]["models"]["all"]["noisy_test"]
        assert n["cnn"]["n_test"] == doc["tasks"][task]["models"]["all"]["cnn"]["n_test"]
        assert zarr.open_group(str(out / "tasks" / task / "test_noisy.zarr"),
                               mode="r").attrs["split"] == "test_noisy"
    assert 0.5 < doc["tasks"]["shape"]["models"]["all"]["noisy_test"]["cnn"]["accuracy"] <= 1
    assert re.search(r"shape +all \(noisy test\) +\d\.\d{3}", headline_rst(doc))


def test_toy_network_with_two_heads_end_to_end(tmp_path):
    """One network with a classification and a regression head (Task.aux):
    its examples carry the second head's targets, 2-rank Horovod training
    logs both heads, evaluation scores both on the same test examples and
    the summary puts each beside its baseline (logistic and ridge on the
    same features)."""
    out = tmp_path / "toy2"
    r = _snakemake([], out, config=["tasks=[shape_and_offset]"])
    assert r.returncode == 0, r.stderr[-4000:]
    test = zarr.open_group(str(out / "tasks" / "shape_and_offset" / "test.zarr"), mode="r")
    ds = zarr.open_group(str(out / "dataset.zarr"), mode="r")
    s = test["structure_index"][...]
    np.testing.assert_array_equal(test["y_aux"][...],
                                  np.stack([ds["x0_pm"][...][s], ds["y0_pm"][...][s]], -1))
    logs = (out / "logs" / "train" / "shape_and_offset" / "all.log").read_text()
    assert "hvd rank=1 size=2" in logs and "hvd rank=0 size=2" in logs
    model = out / "models" / "shape_and_offset" / "all"
    with open(model / "history.csv") as fh:
        header = fh.readline().strip().split(",")
    # both heads' losses, and the main head's accuracy under its one-head name
    assert {"softmax_loss", "aux_loss", "accuracy", "val_accuracy", "val_aux_mae"} <= set(header)
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["aux"] == ["x0_pm", "y0_pm"] and len(manifest["aux_scaling"]["std"]) == 2
    doc = json.loads((out / "summary.json").read_text())
    m = doc["tasks"]["shape_and_offset"]["models"]["all"]
    assert m["cnn"]["accuracy"] > 0.8, m["cnn"]["accuracy"]
    head = m["cnn"]["aux_head"]
    assert set(head["targets"]) == {"x0_pm", "y0_pm"} and head["targets"]["x0_pm"]["unit"] == "pm"
    assert head["r2_mean"] > 0.5, head["targets"]  # the offset is learnt beside the shape
    assert set(head["mae_by_elongated"]) == {"0", "1"}
    assert m["baseline"]["aux_head"]["r2_mean"] > 0.8  # moments locate a column well
    assert (out / "plots" / "shape_and_offset" / "all" / "training_curves.png").stat().st_size > 5000
    s = _summary_cli(tmp_path, out, tasks="[shape_and_offset]")
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'tests'}{os.pathsep}{ROOT / 'workflow'}")
    assert re.search(r"second head R² -?\d\.\d{3}, baseline -?\d\.\d{3}: x0_pm MAE [\d.]+ pm "
                     r"\(baseline [\d.]+\)", s.stdout), s.stdout
    # predict: the two heads of one model on images it never saw
    images = tmp_path / "images.npy"
    np.save(images, test["x"][:4])
    p = subprocess.run([str(train_env() / "bin" / "python"), "-m", "cbedflow", "predict",
                        "--params", json.dumps({"campaign": "toy_campaign:ToyCampaign"}), "--model",
                        str(model / "model.keras"), "--task", "shape_and_offset", "--input",
                        str(images), "--out-dir", str(tmp_path / "pred"), "--mc-samples", "5"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    pred = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert pred["aux"]["targets"] == ["x0_pm", "y0_pm"] and pred["aux"]["units"] == ["pm", "pm"]
    got = np.asarray(pred["aux"]["predicted"])
    truth = test["y_aux"][:4]
    assert got.shape == (4, 2) and np.all(np.asarray(pred["aux"]["predicted_std"]) >= 0)
    # the head's error on these images is the size of its test MAE, not of the targets' spread
    assert np.abs(got - truth).mean() < 3 * np.mean([t["mae"] for t in head["targets"].values()])
    assert re.search(r"line 0: (round|elongated) \(\d+\.\d%\); x0_pm -?[\d.]+ \+- [\d.]+ pm",
                     p.stderr + p.stdout), p.stderr[-2000:]
    arrays = zarr.open_group(str(tmp_path / "pred" / "predictions.zarr"), mode="r")
    assert arrays["aux_predicted"].shape == (4, 2) and arrays.attrs["aux_targets"] == ["x0_pm", "y0_pm"]
