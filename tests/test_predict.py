"""Unit tests of predict's input checks and resampling (no model needed).
The end-to-end predict runs (good data and each bad input, through the CLI and
Snakemake) are in test_workflow.py, on the tiny campaign's held-out data."""

import numpy as np
import pytest
import zarr

from cbedflow.examples import crop_pattern
from cbedflow.predict import PredictError, load_scan, resample_patterns, resample_scan


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
    ("format", r"unknown format; expected a .npy file"),
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
