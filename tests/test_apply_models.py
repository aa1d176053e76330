"""Pure helpers of benchmarks/apply_models.py (numpy only, no model)."""

import importlib.util
import math

import numpy as np
import pytest

from conftest import ROOT


def _module():
    spec = importlib.util.spec_from_file_location("apply_models",
                                                  ROOT / "benchmarks" / "apply_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


am = _module()


def test_task_targets_follow_the_tasks_only_and_exclude():
    from cbedflow.campaigns.lao_sto_cbed import TASKS

    rough = np.array([0, 0, 1, 1, 1, 1], np.int8)
    step_k = np.array([-1, -1, 0, 1, 10, 5], np.int8)
    labels = {"rough": rough, "step_k": step_k}
    keep, y = am.task_targets(TASKS["rough_vs_diffuse"], labels)
    assert keep.tolist() == [0, 1, 2, 3, 4, 5] and y.tolist() == [0, 0, 1, 1, 1, 1]
    keep, y = am.task_targets(TASKS["step_vs_intermixing"], labels)  # k = 0, 10 left out
    assert keep.tolist() == [0, 1, 3, 5] and y.tolist() == [0, 0, 1, 1]
    keep, y = am.task_targets(TASKS["step_position"], labels)  # steps only, class = k
    assert keep.tolist() == [2, 3, 4, 5] and y.tolist() == [0, 1, 10, 5]
    with pytest.raises(am.ApplyError, match="no label array step_k"):
        am.task_targets(TASKS["step_position"], {"rough": rough})


def test_mcnemar_exact_p():
    assert am.mcnemar_exact_p(0, 0) == 1.0
    assert am.mcnemar_exact_p(3, 3) == 1.0
    assert am.mcnemar_exact_p(0, 6) == pytest.approx(2 / 2 ** 6)
    # 1 vs 9: 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert am.mcnemar_exact_p(9, 1) == pytest.approx(2 * (1 + 10) / 2 ** 10)
    assert am.mcnemar_exact_p(1, 9) == am.mcnemar_exact_p(9, 1)


def test_cluster_bootstrap_diff():
    groups = np.repeat(np.arange(50), 2)
    same = np.ones(100, bool)
    assert am.cluster_bootstrap_diff(same, same, groups, 500) == (0.0, 0.0)
    a = np.zeros(100, bool)
    b = np.zeros(100, bool)
    b[:20] = True  # 10 structures better on b: +0.2
    lo, hi = am.cluster_bootstrap_diff(a, b, groups, 2000, seed=1)
    assert 0 < lo < 0.2 < hi < 0.4


def test_relative_l2_and_accuracy_by():
    ref = np.ones((2, 3))
    assert am.relative_l2(ref, ref) == 0.0
    assert am.relative_l2(1.1 * ref, ref) == pytest.approx(0.1)
    assert math.isnan(am.relative_l2(ref, 0 * ref))
    out = am.accuracy_by(np.array([-1, -1, 3]), np.array([True, False, True]))
    assert out == {"-1": {"n": 2, "accuracy": 0.5}, "3": {"n": 1, "accuracy": 1.0}}


def test_bad_paths_are_one_line_errors(tmp_path, capsys):
    assert am.main([str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("apply_models: error: ")


def test_common_pixels_align_the_zero_angle():
    a = np.zeros((3, 52, 52))
    b = np.zeros((3, 51, 51))
    a[:, 26, 26] = b[:, 25, 25] = 1.0  # zero angle at n // 2
    a[:, 27, 20] = b[:, 26, 19] = 2.0
    ca, cb = am.common_pixels(a, b)
    assert ca.shape == cb.shape == (3, 51, 51)
    assert np.array_equal(ca, cb)


def test_accuracy_by_thirds_splits_at_the_tertiles():
    values = np.arange(9.0)  # thirds 0-2, 3-5, 6-8
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0], bool)
    got = am.accuracy_by_thirds(values, correct)
    assert [got[k]["n"] for k in ("low", "middle", "high")] == [3, 3, 3]
    assert got["low"]["accuracy"] == 1.0 and got["high"]["accuracy"] == 0.0
    assert got["middle"]["accuracy"] == pytest.approx(1 / 3)
    assert got["high"]["range"] == [6.0, 8.0]


def test_pairs_compare_structure_labels_not_the_microscope():
    label_differences = am.label_differences
    base = {"step_k": np.array([0, 5]), "intermix_fraction": np.array([np.nan, 0.2])}
    ideal = {**base, "perturbed": np.array([0, 0])}
    tilted = {**base, "perturbed": np.array([1, 1]), "perturb_tilt_mrad": np.array([1.0, 2.0])}
    assert label_differences(ideal, tilted) == []  # same structures, another microscope
    assert label_differences(base, {**base}) == []  # NaN labels compare equal
    other = {**base, "step_k": np.array([0, 6])}
    assert label_differences(base, other) == ["label 'step_k' differs"]
    assert label_differences(base, {"step_k": base["step_k"]}) == [
        "label 'intermix_fraction' differs"]
