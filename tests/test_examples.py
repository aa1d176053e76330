"""Crop, split and augment (simulation environment, no TensorFlow)."""

import numpy as np
import pytest
import zarr

from cbedflow.campaigns import get_campaign
from cbedflow.campaigns.lao_sto_cbed import crop_pattern
from cbedflow.examples import (
    ExampleError,
    augment,
    check_examples,
    split_structures,
)
from cbedflow.learn.loop import lr_scale
from cbedflow.metrics import classification_metrics
from cbedflow.storage import CorruptOutputError, atomic_group


def test_crop_pattern_centre_and_binning():
    c = np.zeros((2, 3, 9, 9), np.float32)
    c[..., 4, 4] = 1.0  # zero beam at n // 2
    c[..., 0, 0] = 5.0  # outside the crop
    out = crop_pattern(c, 4, 2)
    assert out.shape == (2, 3, 2, 2)
    assert out.sum() == pytest.approx(2 * 3 * 1.0)  # binning sums, crop drops the corner
    with pytest.raises(ExampleError, match="pattern_px=10.*9 x 9"):
        crop_pattern(c, 10, 1)
    with pytest.raises(ExampleError, match="multiple"):
        crop_pattern(c, 5, 2)


def test_scan_window_jitter_is_seeded_uniform_and_bounded():
    from cbedflow.campaigns.lao_sto_cbed import scan_windows

    def scan_window(*args):
        (w,) = scan_windows(*args)
        return w

    crop = {"window_positions": 13, "jitter_positions": 2}
    draws = [scan_window(17, crop, 5, "rough_vs_diffuse", s, line)
             for s in range(200) for line in range(4)]
    starts = np.array([d[0] for d in draws])
    offsets = np.array([d[1] for d in draws])
    assert np.array_equal(starts, offsets + 2)  # centred window starts at position 2
    assert set(offsets.tolist()) == {-2, -1, 0, 1, 2}
    assert np.all(np.abs(np.bincount(offsets + 2) / len(offsets) - 0.2) < 0.05)
    assert draws == [scan_window(17, crop, 5, "rough_vs_diffuse", s, line)
                     for s in range(200) for line in range(4)]
    assert draws != [scan_window(17, crop, 6, "rough_vs_diffuse", s, line)
                     for s in range(200) for line in range(4)]
    assert scan_window(17, {"window_positions": 13, "jitter_positions": 0}, 5, "t", 3, 0) == (2, 0)
    assert scan_window(13, {"window_positions": None, "jitter_positions": 0}, 5, "t", 3, 0) == (0, 0)
    with pytest.raises(ExampleError, match="needs 19 probe positions.*has 17"):
        scan_window(17, {"window_positions": 13, "jitter_positions": 3}, 5, "t", 0, 0)
    # training: distinct offsets per line, every one of them at 2J + 1
    five = scan_windows(17, crop, 5, "t", 3, 1, 5)
    assert sorted(o for _, o in five) == [-2, -1, 0, 1, 2]
    three = scan_windows(17, crop, 5, "t", 3, 1, 3)
    assert len({o for _, o in three}) == 3 and three == scan_windows(17, crop, 5, "t", 3, 1, 3)
    with pytest.raises(ExampleError, match="train_windows=6 is more than the 5"):
        scan_windows(17, crop, 5, "t", 3, 1, 6)


def test_cut_examples_cut_windows_and_leave_out_abrupt_interfaces():
    camp = get_campaign({})
    cfg = {"seed": 1, "crop": {"pattern_px": 4, "binning": 2, "window_positions": 3,
                               "jitter_positions": 1, "train_windows": 3}}
    cbed = np.zeros((5, 2, 4, 4), np.float32)
    cbed[:, :, 2, 2] = np.arange(5)[:, None]  # the position index, in the zero beam
    task = camp.tasks["rough_vs_diffuse"]
    ex = camp.cut_examples(cbed, task, cfg, sample=7)
    assert len(ex) == 2
    for v, meta in ex:
        assert v.shape == (3, 2, 2)
        first = 1 + meta["window_offset"]
        assert np.array_equal(v[:, 1, 1], np.arange(first, first + 3))
    train = camp.cut_examples(cbed, task, cfg, sample=7, split="train")
    assert len(train) == 2 * 3  # every offset of both lines
    assert sorted(m["window_offset"] for _, m in train) == [-1, -1, 0, 0, 1, 1]
    physical = camp.tasks["step_vs_intermixing"]
    assert physical.keeps({"rough": 1, "step_k": 5}) and physical.keeps({"rough": 0, "step_k": -1})
    assert not physical.keeps({"rough": 1, "step_k": 0})
    assert not physical.keeps({"rough": 1, "step_k": 10})
    assert task.keeps({"rough": 1, "step_k": 10})
    # the step position's physical protocol: steps k = 1..9 only, 11 class names kept
    spp = camp.tasks["step_position_physical"]
    kept = [k for k in range(-1, 11) if spp.keeps({"rough": int(k >= 0), "step_k": k})]
    assert kept == list(range(1, 10))
    assert spp.classes == camp.tasks["step_position"].classes and spp.ordinal
    assert spp.options == {"average_y": True}


def test_split_by_structure_stratified_and_seeded():
    labels = {i: i % 2 for i in range(40)}
    fr = {"validation": 0.2, "test": 0.25}
    a = split_structures(labels, fr, seed=1)
    assert a == split_structures(labels, fr, seed=1)
    assert a != split_structures(labels, fr, seed=2)
    assert set(a) == set(labels)  # every structure in exactly one split
    for lab in (0, 1):
        members = [s for s in labels if labels[s] == lab]
        counts = {sp: sum(a[s] == sp for s in members) for sp in ("train", "validation", "test")}
        assert counts == {"train": 11, "validation": 4, "test": 5}


def _examples(path, x, y):
    with atomic_group(path) as g:
        g.create_array("x", data=x, chunks=(1,) + x.shape[1:])
        g.create_array("y", data=np.asarray(y, np.int32))
        for k, dt in (("structure_index", "int32"), ("thickness_A", "float32"),
                      ("line", "int16"), ("window_offset", "int16"), ("align_shift", "int16"),
                      ("step_k", "int8"),
                      ("intermix_fraction", "float32")):
            g.create_array(k, data=np.zeros(len(y), dt))
        g.attrs.update(task="rough_vs_diffuse", complete=True, classes=["diffuse", "step"],
                       dims=["example", "scan_x", "kx", "ky"])


def test_augment_is_seeded_and_poisson(tmp_path):
    x = np.full((3, 5, 16, 16), 1.0 / 256, np.float32)  # total intensity 1 per pattern
    _examples(tmp_path / "train.zarr", x, [0, 1, 0])
    cfg = {"seed": 4, "augment": {"copies": 3, "keep_original": True,
                                  "dose_e_per_pattern": [1e3, 1e4], "max_rotation_deg": 0.0}}
    camp = get_campaign(cfg)
    augment(camp, tmp_path / "train.zarr", tmp_path / "a.zarr", cfg, progress=lambda m: None)
    augment(camp, tmp_path / "train.zarr", tmp_path / "b.zarr", cfg, progress=lambda m: None)
    a = zarr.open_group(str(tmp_path / "a.zarr"))
    b = zarr.open_group(str(tmp_path / "b.zarr"))
    np.testing.assert_array_equal(a["x"][...], b["x"][...])
    assert a["x"].shape[0] == 9 and list(a["y"][...]) == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    np.testing.assert_array_equal(a["x"][0], x[0])  # first copy is the original
    dose = a["dose_e_per_pattern"][...]
    assert np.isinf(dose[0]) and np.all((dose[1:3] >= 1e3) & (dose[1:3] <= 1e4))
    noisy, d = a["x"][1], dose[1]
    counts = noisy * d
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-2)  # whole electrons
    # Poisson: variance of counts ~ mean counts per pixel
    lam = d / 256
    assert counts.mean() == pytest.approx(lam, rel=0.05)
    assert counts.var() == pytest.approx(lam, rel=0.2)


def test_noisy_test_copy_is_one_noisy_version_per_example_on_its_own_seeds(tmp_path):
    x = np.full((3, 5, 16, 16), 1.0 / 256, np.float32)
    _examples(tmp_path / "test.zarr", x, [0, 1, 0])
    zarr.open_group(str(tmp_path / "test.zarr"), mode="r+").attrs["source"] = "dataset.zarr"
    cfg = {"seed": 4, "augment": {"copies": 3, "keep_original": True,
                                  "dose_e_per_pattern": [1e3, 1e4], "max_rotation_deg": 0.0}}
    camp = get_campaign(cfg)
    quiet = {"progress": lambda m: None}
    augment(camp, tmp_path / "test.zarr", tmp_path / "n.zarr", cfg, noisy_test=True, **quiet)
    augment(camp, tmp_path / "test.zarr", tmp_path / "t.zarr", cfg, **quiet)
    n = zarr.open_group(str(tmp_path / "n.zarr"))
    t = zarr.open_group(str(tmp_path / "t.zarr"))
    assert n["x"].shape[0] == 3 and list(n["y"][...]) == [0, 1, 0]  # one copy, no original
    dose = n["dose_e_per_pattern"][...]
    assert np.all((dose >= 1e3) & (dose <= 1e4))  # every example noisy
    assert not np.any(np.isclose(dose[:, None], t["dose_e_per_pattern"][...][None]))
    assert n.attrs["split"] == "test_noisy" and n.attrs["source"] == "dataset.zarr"
    assert n.attrs["augmented_from"] == str(tmp_path / "test.zarr")
    again = tmp_path / "n2.zarr"
    augment(camp, tmp_path / "test.zarr", again, cfg, noisy_test=True, **quiet)
    np.testing.assert_array_equal(zarr.open_group(str(again))["x"][...], n["x"][...])


def test_check_examples_names_file_and_problem(tmp_path):
    with pytest.raises(CorruptOutputError, match="missing.zarr: split is missing"):
        check_examples(tmp_path / "missing.zarr")
    x = np.ones((2, 3, 4, 4), np.float32)
    x[1, 0, 0, 0] = np.nan
    _examples(tmp_path / "nan.zarr", x, [0, 1])
    with pytest.raises(CorruptOutputError, match="nan.zarr: example 1 holds non-finite"):
        check_examples(tmp_path / "nan.zarr")
    _examples(tmp_path / "shape.zarr", np.ones((2, 3, 4), np.float32), [0, 1])
    with pytest.raises(CorruptOutputError, match="shape.zarr: x has shape"):
        check_examples(tmp_path / "shape.zarr")
    _examples(tmp_path / "labels.zarr", np.ones((2, 3, 4, 4), np.float32), [0, 5])
    with pytest.raises(CorruptOutputError, match="labels span 0..5"):
        check_examples(tmp_path / "labels.zarr", n_classes=2)


def test_classification_metrics():
    y = [0, 0, 1, 1, 1, 0]
    p = [0, 1, 1, 1, 0, 0]
    m = classification_metrics(y, p, ["diffuse", "step"], [39.05] * 4 + [78.1] * 2,
                               {"step_k": [-1, -1, 3, 5, 5, -1]})
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["per_class"]["step"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["diffuse"]["recall"] == pytest.approx(2 / 3)
    assert m["per_thickness_accuracy"] == {"39.05": 0.75, "78.10": 0.5}
    assert m["accuracy_by_step_k"]["5"] == 0.5


def test_lr_scaling():
    assert lr_scale("linear", 4) == 4 and lr_scale("sqrt", 4) == 2 and lr_scale("none", 4) == 1
    with pytest.raises(ValueError, match="lr_scaling='cubic'"):
        lr_scale("cubic", 2)


def test_truncate_history(tmp_path):
    from cbedflow.learn.loop import truncate_history

    h = tmp_path / "history.csv"
    h.write_text("epoch,accuracy,loss\n0,0.5,1\n1,0.6,0.9\n2,0.7,0.8\n3,0.7,0.8\n")
    truncate_history(h, 3)
    assert h.read_text().splitlines() == ["epoch,accuracy,loss", "0,0.5,1", "1,0.6,0.9",
                                          "2,0.7,0.8"]


def test_model_geometry_check():
    from cbedflow.learn.manifest import check_model_geometry

    manifest = {"task": "rough_vs_diffuse",
                "geometry": {"input_shape": [13, 16, 16], "angular_sampling_mrad": [5.1, 5.1],
                             "scan_step_A": [0.98, 0.98]}}
    ok = {"angular_sampling_mrad": [5.1, 5.1], "scan_step_A": [0.98, 0.98],
          "task": "rough_vs_diffuse"}
    check_model_geometry(manifest, ok, (13, 16, 16), "t.zarr")
    with pytest.raises(ValueError, match="t.zarr.*angular_sampling_mrad"):
        check_model_geometry(manifest, dict(ok, angular_sampling_mrad=[2.5, 2.5]),
                             (13, 16, 16), "t.zarr")
    with pytest.raises(ValueError, match="example shape"):
        check_model_geometry(manifest, ok, (13, 8, 8), "t.zarr")
    with pytest.raises(ValueError, match="task 'step_position'"):
        check_model_geometry(manifest, dict(ok, task="step_position"), (13, 16, 16), "t.zarr")


def test_atomic_file(tmp_path):
    from cbedflow.storage import atomic_file

    target = tmp_path / "sub" / "model.weights.h5"
    with atomic_file(target) as tmp:
        assert tmp.name.endswith("model.weights.h5") and tmp != target
        tmp.write_text("ok")
        assert not target.exists()
    assert target.read_text() == "ok"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "ok"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.weights.h5"]


def test_stack_writer_writes_whole_chunks_in_order(tmp_path):
    from cbedflow.storage import StackWriter, stack_chunk_length

    assert stack_chunk_length((13, 16, 16)) == 2**20 // (13 * 16 * 16 * 4)
    assert stack_chunk_length((1000, 1000)) == 1  # an item larger than a chunk
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=3)
    a = g.create_array("x", shape=(10, 3), dtype="float32", chunks=(4, 3), fill_value=-1.0)
    w = StackWriter(a)
    for j in range(10):
        w[j] = np.full(3, j)
    with pytest.raises(IndexError, match="item 3 written out of order"):
        w[3] = np.zeros(3)
    w.close()
    np.testing.assert_array_equal(a[...], np.repeat(np.arange(10), 3).reshape(10, 3))
    short = StackWriter(g.create_array("y", shape=(5,), dtype="float32", chunks=(2,)))
    short[0] = 1.0
    with pytest.raises(ValueError, match="1 of 5 items written"):
        short.close()


def test_read_plan_keeps_order_and_reads_whole_chunks():
    from cbedflow.learn.data import read_plan

    idx = np.arange(0, 1000, 2)  # one rank of two
    blocks = read_plan(idx, chunk=100, min_block=64)
    np.testing.assert_array_equal(np.concatenate(blocks), idx)
    assert all(len(b) >= 64 for b in blocks[:-1])
    # a block ends at a chunk boundary (the next block starts a new chunk)
    assert all(b[0] // 100 != a[-1] // 100 for a, b in zip(blocks, blocks[1:]))
    # shuffled indices still come back in their order, in increasing runs
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(300)
    blocks = read_plan(shuffled, chunk=50, min_block=8)
    np.testing.assert_array_equal(np.concatenate(blocks), shuffled)
    assert all(np.all(np.diff(b) > 0) for b in blocks)


def test_a_second_head_is_a_classification_tasks_and_stays_out_of_one_head_records():
    """Task.aux (a second, regression head) is refused on a regression task
    and for a weight <= 0, one line naming the value; a one-head task's
    record (manifests, training identity) has no aux keys, as before."""
    from cbedflow.tasks import Task

    with pytest.raises(ValueError, match="task t: aux .* needs a classification task"):
        Task("t", ("a", "b"), kind="regression", aux=("c",))
    with pytest.raises(ValueError, match="aux_weight=0.0 is invalid; valid: > 0"):
        Task("t", "a", classes=("x", "y"), aux=("c",), aux_weight=0.0)
    one = Task("t", "a", classes=("x", "y"))
    assert not any(k.startswith("aux") for k in one.to_dict())
    two = Task("t", "a", classes=("x", "y"), aux=("c", "d"), aux_units=("deg", "deg"))
    assert two.to_dict()["aux"] == ["c", "d"] and two.to_dict()["aux_weight"] == 1.0
