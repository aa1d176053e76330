"""The reproduction config and its committed results (docs/results/)."""

import json
from pathlib import Path

import numpy as np
import pytest

from cbedflow.campaigns import get_campaign as Campaign
from cbedflow.config import load
from cbedflow.examples import split_structures
from cbedflow.metrics import calibration
from cbedflow.summary import check_summary
from cbedflow.tasks import ModelSpec, model_specs, select_examples

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def test_committed_summary_is_what_the_summarize_rule_writes():
    """Schema, not numbers: the committed JSON passes the same check that the
    summarize rule applies before writing."""
    doc = json.loads((RESULTS / "summary.json").read_text())
    check_summary(doc)
    assert set(doc["tasks"]) == {"rough_vs_diffuse", "rough_vs_diffuse_centred",
                                 "step_vs_intermixing", "step_position", "step_position_physical"}
    assert set(doc["tasks"]["step_position"]["models"]) == {"t78"}
    # the physical step position is scored on the steps k = 1..9 only
    spp = doc["tasks"]["step_position_physical"]["models"]["t78"]["cnn"]["accuracy_by_step_k"]
    assert sorted(int(k) for k in spp) == list(range(1, 10))
    # the k = 10 class is reported under both placements (the shortcut check)
    for task in ("rough_vs_diffuse", "rough_vs_diffuse_centred"):
        assert "10" in doc["tasks"][task]["models"]["all"]["cnn"]["accuracy_by_step_k"]


def test_committed_run_record_names_command_commit_time_and_memory():
    run = json.loads((RESULTS / "run.json").read_text())
    assert "config/reproduce.yaml" in " ".join(run["command"])
    assert len(run["commit"]) == 40 and int(run["commit"], 16) >= 0
    assert 0 < run["wall_s"] == pytest.approx(sum(step["wall_s"] for step in run["steps"]),
                                              abs=1.0)
    assert all(step["wall_s"] > 0 for step in run["steps"])
    assert run["peak_rss_GiB"] > 0
    for name in run["plots"]:
        assert (RESULTS / name).stat().st_size > 5000


def test_summary_schema_refuses_a_broken_document():
    doc = json.loads((RESULTS / "summary.json").read_text())
    doc["tasks"]["rough_vs_diffuse"]["models"]["all"]["cnn"]["accuracy"] = 1.5
    with pytest.raises(ValueError, match="accuracy"):
        check_summary(doc)


def test_reproduction_config_has_at_least_100_test_examples_per_task():
    cfg = load(ROOT / "config" / "reproduce.yaml")
    camp = Campaign(cfg)
    specs = camp.structures
    n_thick = len(cfg["structures"]["thicknesses_A"])
    rough = {i: s.step_k for i, s in enumerate(specs) if s.kind == "step"}
    assign = split_structures(rough, cfg["split"], cfg["seed"])
    assert sum(v == "test" for v in assign.values()) * n_thick >= 100  # step position
    steps = {i: k for i, k in rough.items() if 0 < k < 10}  # step_position_physical
    assign = split_structures(steps, cfg["split"], cfg["seed"])
    assert sum(v == "test" for v in assign.values()) * n_thick >= 100
    both = {i: int(s.kind == "step") for i, s in enumerate(specs)}
    assign = split_structures(both, cfg["split"], cfg["seed"])
    lines = cfg["simulation"]["scan"]["positions_y"]
    assert sum(v == "test" for v in assign.values()) * n_thick * lines >= 100
    assert sorted(set(rough.values())) == list(range(11))


def test_model_specs_and_thickness_selection():
    specs = model_specs(["per_thickness", "all", "thickness_input"], {"39": 39.0, "78": 78.0})
    assert [s.id for s in specs] == ["t39", "t78", "all", "all-thickness-input"]
    t = np.array([39.05, 78.1, 39.05, 78.1])  # realised (whole cells)
    assert select_examples(t, specs[1], [39.0, 78.0]).tolist() == [1, 3]
    assert select_examples(t, ModelSpec("all"), [39.0, 78.0]).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="'bogus' is not one of"):
        model_specs(["bogus"], {})


def test_calibration_of_a_perfectly_and_an_over_confident_model():
    y = np.array([0, 1] * 50)
    sure = np.eye(2)[y]
    assert calibration(sure, y, 10)["ece"] == pytest.approx(0.0)
    over = np.tile([0.9, 0.1], (100, 1))  # 90% sure of class 0, right half the time
    cal = calibration(over, y, 10)
    assert cal["ece"] == pytest.approx(0.4)
    assert sum(b["count"] for b in cal["bins"]) == 100
    assert cal["bins"][9]["count"] == 100  # 0.9 falls in the top bin [0.9, 1.0]


def test_report_headline_from_the_committed_summary(root):
    """The report's landing-page table: one row per model with the CNN, MC
    dropout and baseline accuracies of summary.json, valid reStructuredText."""
    import json

    from docutils.core import publish_parts

    from cbedflow.summary import headline_rst

    doc = json.loads((root / "docs" / "results" / "summary.json").read_text())
    rst = headline_rst(doc)
    m = doc["tasks"]["rough_vs_diffuse"]["models"]["all"]
    row = (f"rough_vs_diffuse all {m['cnn']['accuracy']:.3f} {m['cnn']['mc_dropout_accuracy']:.3f} "
           f"{m['baseline']['accuracy']:.3f} {m['cnn']['n_test']}")
    assert row in " ".join(rst.split())
    n_models = sum(len(t["models"]) for t in doc["tasks"].values())
    links = "\n.. _Evaluation: #e\n.. _accuracy_overview.png: #a\n.. _summary.json: #s\n"
    html = publish_parts(rst + links, writer_name="html",
                         settings_overrides={"halt_level": 2})["html_body"]
    assert html.count("<tr>") == n_models + 1  # header + one row per model
