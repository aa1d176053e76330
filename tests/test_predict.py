"""Unit tests of predict's input checks and resampling (no model needed).
The end-to-end predict runs (good data and each bad input, through the CLI and
Snakemake) are in test_workflow.py, on the tiny campaign's held-out data."""

import numpy as np
import pytest
import zarr

from cbedflow.campaigns.lao_sto_cbed import crop_pattern
from cbedflow.campaigns.lao_sto_cbed.measured import PredictError, load_scan, resample_patterns, resample_scan


def geometry(n_sim=40, pattern_px=36, binning=3, s_sim=1.5, positions=5):
    n = pattern_px // binning
    return {"input_shape": [positions, n, n], "angular_sampling_mrad": [s_sim * binning] * 2,
            "scan_step_A": [0.9, 0.9], "crop": {"pattern_px": pattern_px, "binning": binning}}


def test_resampling_at_the_training_geometry_is_the_training_crop():
    rng = np.random.default_rng(0)
    cbed = rng.random((5, 3, 40, 40))
    geo = geometry()
    got = resample_patterns(cbed, [1.5, 1.5], geo)
    want = crop_pattern(cbed, 36, 3)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _coarsen(fine, axis):
    """Counts on pixels twice as wide whose edges sit on fine pixel centres
    (zero angle at n // 2 on both): half, whole, half of three fine pixels."""
    f = np.moveaxis(fine, axis, -1)
    pad = np.concatenate([np.zeros(f.shape[:-1] + (1,)), f, np.zeros(f.shape[:-1] + (1,))], -1)
    m = np.arange(f.shape[-1] // 2)
    c = 0.5 * pad[..., 2 * m] + pad[..., 2 * m + 1] + 0.5 * pad[..., 2 * m + 2]
    return np.moveaxis(c, -1, axis)


def test_finer_detector_gives_the_same_counts():
    """The same diffraction recorded on pixels half as wide rebins to the same
    model pixels."""
    fine = np.random.default_rng(1).random((2, 1, 80, 80))
    coarse = _coarsen(_coarsen(fine, -1), -2)  # 40 px of 1.5 mrad
    geo = geometry()
    np.testing.assert_allclose(resample_patterns(fine, [0.75, 0.75], geo),
                               resample_patterns(coarse, [1.5, 1.5], geo), rtol=1e-9)


def test_detector_too_small_names_the_angles():
    with pytest.raises(PredictError, match=r"reach \+-14.2 mrad along kx .* needs \+-27.8"):
        resample_patterns(np.ones((5, 1, 20, 40)), [1.5, 1.5], geometry())


def test_scan_resampling_and_span():
    x = np.arange(9.0)[:, None, None, None] * np.ones((9, 1, 2, 2))  # value = index
    out = resample_scan(x, 0.45, 5, 0.9)  # every second position
    np.testing.assert_allclose(out[:, 0, 0, 0], [0, 2, 4, 6, 8])
    with pytest.raises(PredictError, match=r"spans 3.60 Å .* needs 7.20 Å"):
        resample_scan(x, 0.45, 9, 0.9)
    # a window shorter than the line is centred on it, or starts where asked
    np.testing.assert_array_equal(resample_scan(x, 0.45, 5, 0.45)[:, 0, 0, 0], [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(resample_scan(x, 0.45, 5, 0.45, start_A=0.9)[:, 0, 0, 0],
                                  [2, 3, 4, 5, 6])
    np.testing.assert_allclose(resample_scan(x, 0.45, 5, 0.45, start_A=0.225)[:, 0, 0, 0],
                               [0.5, 1.5, 2.5, 3.5, 4.5])
    with pytest.raises(PredictError, match=r"starting 2.5 Å .* valid starts 0..1.80 Å"):
        resample_scan(x, 0.45, 5, 0.45, start_A=2.5)


def write_zarr(path, cbed, **attrs):
    g = zarr.open_group(str(path), mode="w")
    g.create_array("cbed", data=cbed)
    g.attrs.update(attrs)


@pytest.mark.parametrize("case, message", [
    ("rank", r"shape \(5, 40, 40\) \(3 dims\); expected 4 dims"),
    ("nonfinite", r"2 non-finite values \(first at index \(1, 0, 3, 3\)\)"),
    ("missing", r"sampling scan_step_A is missing; give it as the attribute"),
    ("mismatch", r"--angular-sampling-mrad=2.0 does not match the data's "
                 r"angular_sampling_mrad=\[1.5, 1.5\]"),
    ("format", r"unknown format ..txt.; expected one of: numpy .npy"),
])
def test_bad_input_is_refused_with_its_reason(tmp_path, case, message):
    cbed = np.ones((5, 2, 40, 40))
    kw = {}
    if case == "rank":
        path = tmp_path / "a.npy"
        np.save(path, cbed[:, 0])
        kw = {"scan_step_A": 0.9, "angular_sampling_mrad": 1.5}
    elif case == "nonfinite":
        cbed[1, 0, 3, 3] = np.nan
        cbed[2, 1, 0, 0] = np.inf
        path = tmp_path / "a.npy"
        np.save(path, cbed)
        kw = {"scan_step_A": 0.9, "angular_sampling_mrad": 1.5}
    elif case == "missing":
        path = tmp_path / "a.zarr"
        write_zarr(path, cbed, angular_sampling_mrad=[1.5, 1.5])
    elif case == "mismatch":
        path = tmp_path / "a.zarr"
        write_zarr(path, cbed, angular_sampling_mrad=[1.5, 1.5], scan_step_A=[0.9, 0.9])
        kw = {"angular_sampling_mrad": 2.0}
    else:
        path = tmp_path / "a.txt"
        path.write_text("1 2 3")
    with pytest.raises(PredictError, match=message):
        load_scan(path, **kw)


def test_good_zarr_input_loads_with_its_sampling(tmp_path):
    cbed = np.random.default_rng(2).random((5, 2, 40, 40))
    write_zarr(tmp_path / "a.zarr", cbed, angular_sampling_mrad=[1.5, 1.5],
               scan_step_A=[0.9, 0.9])
    got, step, ang = load_scan(tmp_path / "a.zarr", angular_sampling_mrad=1.5)
    np.testing.assert_array_equal(got, cbed)
    assert step.tolist() == [0.9, 0.9] and ang.tolist() == [1.5, 1.5]


def write_broken_npy(path, case, cbed):
    """A .npy file broken in the way ``case`` names (also used by test_workflow)."""
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("1 2 3\n4 5 6\n")
    elif case == "header":
        np.save(path, cbed)
        raw = bytearray(path.read_bytes())
        raw[10:20] = b"garbage!!!"
        path.write_bytes(bytes(raw))
    elif case == "truncated":
        np.save(path, cbed)
        path.write_bytes(path.read_bytes()[:-1000])
    elif case == "objects":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize("case, message", [
    ("empty", r"a.npy: empty \("),
    ("text", r"a.npy: not a valid .npy file \("),
    ("header", r"a.npy: not a valid .npy file \("),
    ("truncated", r"a.npy: truncated: the header declares \(5, 2, 40, 40\) float64 \(\d+ bytes "
                  r"with the header\), the file has \d+ bytes"),
    ("objects", r"a.npy: holds Python objects"),
])
def test_broken_npy_files_are_named_before_reading(tmp_path, case, message):
    path = tmp_path / "a.npy"
    write_broken_npy(path, case, np.ones((5, 2, 40, 40)))
    with pytest.raises(PredictError, match=message):
        load_scan(path, scan_step_A=0.9, angular_sampling_mrad=1.5)


def test_huge_declared_shape_is_refused_before_reading(tmp_path):
    """A zarr array declaring 2 PiB: refused from its metadata (no MemoryError)."""
    g = zarr.open_group(str(tmp_path / "a.zarr"), mode="w")
    g.create_array("cbed", shape=(4096, 4096, 256, 256), chunks=(1, 1, 256, 256),
                   dtype="float32")
    with pytest.raises(PredictError, match=r"needs 8192.0 GiB .* crop the scan"):
        load_scan(tmp_path / "a.zarr", scan_step_A=0.9, angular_sampling_mrad=1.5)


def test_non_numeric_dtype_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.full((5, 2, 40, 40), "x"))
    with pytest.raises(PredictError, match=r"dtype <U1; expected intensities"):
        load_scan(tmp_path / "a.npy", scan_step_A=0.9, angular_sampling_mrad=1.5)


def test_negative_intensities_are_refused_or_floored(tmp_path):
    cbed = np.random.default_rng(3).random((5, 2, 40, 40))
    cbed[1, 1, 2, 3] = -0.5
    cbed[4, 0, 0, 0] = -3.0
    np.save(tmp_path / "a.npy", cbed)
    kw = {"scan_step_A": 0.9, "angular_sampling_mrad": 1.5}
    with pytest.raises(PredictError, match=r"2 values below -0 \(first at index \(1, 1, 2, 3\): "
                                           r"-0.5\); expected intensities >= 0"):
        load_scan(tmp_path / "a.npy", **kw)
    with pytest.raises(PredictError, match=r"1 values below -1 \(first at index \(4, 0, 0, 0\)"):
        load_scan(tmp_path / "a.npy", negative_floor=1.0, **kw)
    got, _, _ = load_scan(tmp_path / "a.npy", negative_floor=5.0, **kw)
    assert got.min() == 0.0 and got[1, 1, 2, 3] == 0.0 and got[0, 0, 0, 0] == cbed[0, 0, 0, 0]


def test_a_measured_scan_is_placed_by_its_haadf_signal_as_in_training(tmp_path):
    """The window of a model trained with crop.align_positions starts where the
    training alignment would put it: a line whose interface is 6 positions
    further (at the model's step; the data at half that step) starts 6
    positions later; without a HAADF array predict refuses, naming the way out."""
    from test_alignment import _interface_profile

    from cbedflow.campaigns.lao_sto_cbed import reference_profile
    from cbedflow.campaigns.lao_sto_cbed.measured import aligned_start_A, read_measured
    from cbedflow.tasks import Task

    step = 0.9
    ref = reference_profile(np.stack([_interface_profile(25, 12.0)]), 4)
    geo = {**geometry(positions=13), "scan_step_A": [step, step], "alignment": ref}
    for edge, want in ((12.0, 6), (18.0, 12), (9.0, 3)):
        # the data at half the model's step (0.45 Å): 79 samples of the same line
        fine = np.interp(np.arange(79) / 2, np.arange(40), _interface_profile(40, edge))
        start, r = aligned_start_A(np.repeat(fine[:, None], 3, axis=1), step / 2, ref, 13, step)
        assert start == pytest.approx(want * step) and r > 0.99
    cbed = np.random.default_rng(1).random((40, 2, 40, 40))
    path = tmp_path / "a.zarr"
    write_zarr(path, cbed, angular_sampling_mrad=[1.5, 1.5], scan_step_A=[step, step])
    task = Task("rough_vs_diffuse", "rough", classes=("diffuse", "step"))
    with pytest.raises(PredictError, match="no 'haadf' array .* or give --window-start-A"):
        read_measured(path, {}, {"geometry": geo}, task)
    g = zarr.open_group(str(path), mode="a")
    g.create_array("haadf", data=np.repeat(_interface_profile(40, 18.0)[:, None], 2, axis=1))
    x, info = read_measured(path, {}, {"geometry": geo}, task)
    assert info["window"]["start_A"] == pytest.approx(12 * step)
    assert info["window"]["placed"].startswith("aligned")
    np.testing.assert_allclose(x[0, 0], resample_patterns(cbed[12:13, 0], [1.5, 1.5], geo)[0])
    g.create_array("haadf", data=np.ones((3, 2)), overwrite=True)
    with pytest.raises(PredictError, match=r"haadf has shape \(3, 2\); expected the scan's"):
        read_measured(path, {}, {"geometry": geo}, task)
