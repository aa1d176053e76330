"""bfo_polarization.columns: column finding (numpy only) and the traditional
2D-Gaussian polarization estimate, on synthetic [001]pc HAADF lattices of
Gaussian columns (A = 1.0, B = 0.35, sigma 0.35 Å, a = 3.965 Å) with known B
displacements and Poisson noise."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cbedflow.campaigns.bfo_polarization import columns as C

ROOT = Path(__file__).resolve().parents[1]
A_A = 3.965
SIGMA_A = 0.35
MAGNITUDES_PM = (0.0, 20.0, 50.0)


def lattice(shape, pixel_A, rng=None, disp_pm=None, amp_b=0.35, origin_A=(0.37, 0.61),
            background=0.05, sigma_b_A=SIGMA_A):
    """A [001]pc perovskite image: A columns at origin + (i, j) a, B at the cell
    centres plus a displacement per cell (``disp_pm`` for all, or drawn from
    MAGNITUDES_PM in random directions with ``rng``, or none); B columns of
    amplitude ``amp_b`` and width ``sigma_b_A``, A of 1 and SIGMA_A. The lattice
    runs past the image so that edge columns are cut as in a real crop.

    Returns (image, A positions (n, 2) [px], B positions (n, 2) [px], B
    displacements (n, 2) [pm])."""
    nx, ny = shape
    ii, jj = np.meshgrid(np.arange(-2, int(nx * pixel_A / A_A) + 3),
                         np.arange(-2, int(ny * pixel_A / A_A) + 3), indexing="ij")
    a_sites = np.column_stack([ii.ravel(), jj.ravel()]) * A_A + np.asarray(origin_A)
    if disp_pm is not None:
        disp = np.tile(np.asarray(disp_pm, dtype=float), (len(a_sites), 1))
    elif rng is not None:
        m = rng.choice(MAGNITUDES_PM, len(a_sites))
        t = rng.uniform(0, 2 * np.pi, len(a_sites))
        disp = np.column_stack([m * np.cos(t), m * np.sin(t)])
    else:
        disp = np.zeros((len(a_sites), 2))
    b_sites = a_sites + 0.5 * A_A + disp / 100.0
    cols = np.vstack([a_sites, b_sites]) / pixel_A
    amps = np.r_[np.ones(len(a_sites)), np.full(len(b_sites), amp_b)]
    s = np.r_[np.full(len(a_sites), SIGMA_A), np.full(len(b_sites), sigma_b_A)][:, None]
    s = s / pixel_A
    gx = np.exp(-(np.arange(nx)[None, :] - cols[:, :1]) ** 2 / (2 * s * s))
    gy = np.exp(-(np.arange(ny)[None, :] - cols[:, 1:]) ** 2 / (2 * s * s))
    img = np.einsum("m,mi,mj->ij", amps, gx, gy) + background
    return img, a_sites / pixel_A, b_sites / pixel_A, disp


def noisy(img, dose, rng):
    """Poisson noise: ``dose`` counts per pixel for intensity 1 (an A peak)."""
    return rng.poisson(img * dose) / dose


def windows(img, b_px, disp, pixel_A, n, rng, cells=2.0, max_off=0.45):
    """``n`` square windows ``cells`` a wide, each centred within ±``max_off``
    a (per axis) of a random cell centre. Kept only where the true B nearest
    the window centre is nearer than the next one by >= 0.1 a, so that the
    nearest B is well defined. Returns (windows, its P [pm], its position in
    the window [px])."""
    a_px = A_A / pixel_A
    w = int(round(cells * a_px))
    half = (w - 1) / 2
    ideal = b_px - disp / 100.0 / pixel_A
    inside = ((ideal >= 1.5 * a_px) & (ideal <= np.array(img.shape) - 1 - 1.5 * a_px)).all(1)
    out, truth, where = [], [], []
    while len(out) < n:
        k = rng.choice(np.nonzero(inside)[0])
        start = np.round(ideal[k] + rng.uniform(-max_off, max_off, 2) * a_px - half).astype(int)
        dist = np.linalg.norm(b_px - (start + half), axis=1)
        first, second = np.argsort(dist)[:2]
        if dist[second] - dist[first] < 0.1 * a_px:
            continue
        out.append(img[start[0]:start[0] + w, start[1]:start[1] + w])
        truth.append(disp[first])
        where.append(b_px[first] - start)
    return np.array(out), np.array(truth), np.array(where)


def nearest(points, targets):
    """Distance from each of ``points`` to the nearest of ``targets``."""
    return np.linalg.norm(points[:, None, :] - targets[None, :, :], axis=-1).min(axis=1)


def test_smooth_is_a_unit_gaussian_and_keeps_edge_columns():
    x, y = np.meshgrid(np.arange(41), np.arange(37), indexing="ij")
    g = np.exp(-((x - 20) ** 2 + (y - 18) ** 2) / (2 * 2.0 ** 2)) + 0.1
    for pad in ("dark", "reflect", "periodic"):
        s = C.smooth(g, 1.5, pad)
        # Gaussian * Gaussian: peak height s0²/(s0² + s²) of the original
        assert s.max() - 0.1 == pytest.approx(4.0 / (4.0 + 2.25), rel=0.01)
        np.testing.assert_allclose(C.smooth(np.full((20, 30), 3.0), 2.0, pad), 3.0,
                                   atol=1e-12)
    np.testing.assert_array_equal(C.smooth(g, 0.0), g)
    with pytest.raises(ValueError, match="pad"):
        C.smooth(g, 1.0, "wrap")
    # A column 1.6 px inside the edge: 'dark' keeps its peak within 0.35 px,
    # 'reflect' pulls it onto the edge (why 'dark' is the default).
    edge = np.exp(-((x - 1.6) ** 2 + (y - 18.2) ** 2) / (2 * 1.75 ** 2)) + 0.05
    dark = C.find_peaks(C.smooth(edge, 2.0, "dark"), 6)[0]
    mirror = C.find_peaks(C.smooth(edge, 2.0, "reflect"), 6)[0]
    assert abs(dark[0] - 1.6) < 0.35 and abs(dark[1] - 18.2) < 0.1
    assert mirror[0] == 0.0


@pytest.mark.parametrize("pixel_A", [0.2, 0.33])
def test_find_peaks_finds_every_column_of_a_clean_image(pixel_A):
    img, a, b, _ = lattice((150, 130), pixel_A, np.random.default_rng(0))
    peaks = C.find_peaks(img, A_A / 3 / pixel_A)
    true = np.vstack([a, b])
    hi = np.array(img.shape) - 2
    inner = true[((true >= 1) & (true <= hi)).all(axis=1)]
    # log-parabola refinement: exact for a Gaussian (a plain parabola: 0.02-0.06 px)
    assert nearest(inner, peaks).max() < 0.01
    found = peaks[((peaks >= 1) & (peaks <= hi)).all(axis=1)]
    assert len(found) == len(inner)
    assert nearest(found, true).max() < 0.01
    # brightest first: the A columns (1.0) before the B columns (0.35)
    vals = img[tuple(np.round(peaks).astype(int).T)]
    assert (np.diff(vals) <= 0).all()


def test_find_peaks_threshold_flat_and_ties():
    img, a, b, _ = lattice((100, 100), 0.2, np.random.default_rng(1))
    bright = C.find_peaks(img, 6.6, threshold=0.5)
    bright = bright[((bright >= 1) & (bright <= 98)).all(axis=1)]  # not edge tails
    assert len(bright) > 10 and nearest(bright, a).max() < 0.1  # B (0.35) are below
    assert C.find_peaks(np.full((30, 30), 2.0), 3).shape == (0, 2)
    assert C.find_peaks(np.full((30, 30), np.nan), 3).shape == (0, 2)
    plateau = np.zeros((20, 20))
    plateau[8:10, 5:7] = 1.0  # a 2x2 plateau is one peak, refined to its centre
    p = C.find_peaks(plateau, 3)
    assert len(p) == 1 and np.abs(p[0] - [8.5, 5.5]).max() <= 0.5


@pytest.mark.parametrize("pixel_A,dose,amp_b", [(0.2, None, 0.35), (0.33, None, 0.35),
                                                (0.2, 300, 0.35), (0.33, 300, 0.35),
                                                (0.2, None, 0.15)])
def test_find_b_sites_returns_exactly_the_b_columns(pixel_A, dose, amp_b):
    rng = np.random.default_rng(2)
    img, a, b, _ = lattice((150, 130), pixel_A, rng, amp_b=amp_b, origin_A=(1.1, 2.3))
    if dose:
        img = noisy(img, dose, rng)
    found = C.find_b_sites(img, pixel_A, A_A)
    a_px = A_A / pixel_A
    upper = np.array(img.shape) - 1 - a_px / 2
    surely = b[((b >= a_px / 2 + 0.5) & (b <= upper - 0.5)).all(axis=1)]
    maybe = b[((b >= a_px / 2 - 0.5) & (b <= upper + 0.5)).all(axis=1)]
    assert len(surely) <= len(found) <= len(maybe) and len(surely) > 20
    assert nearest(surely, found).max() < 0.5
    assert nearest(found, b).max() < 0.5
    assert nearest(found, a).min() > a_px / 3  # none of the A columns
    assert ((found >= a_px / 2) & (found <= upper)).all()


def test_find_b_sites_finds_nothing_in_noise_and_fails_on_b_bright():
    rng = np.random.default_rng(3)
    for _ in range(3):
        assert len(C.find_b_sites(rng.poisson(20.0, (200, 200)).astype(float), 0.2, A_A)) == 0
    # A B-bright lattice: the 'B' found are the A sites (documented limitation)
    img, a, b, _ = lattice((120, 120), 0.2, amp_b=2.0)
    found = C.find_b_sites(img, 0.2, A_A)
    assert len(found) > 0 and nearest(found, a).max() < 0.5
    with pytest.raises(ValueError, match="positive"):
        C.find_b_sites(img, 0.0, A_A)


def test_fit_gaussian_2d_recovers_a_column_and_is_bounded():
    x, y = np.meshgrid(np.arange(30), np.arange(28), indexing="ij")
    img = 0.8 * np.exp(-((x - 14.3) ** 2 + (y - 12.6) ** 2) / (2 * 1.7 ** 2)) + 0.1
    f = C.fit_gaussian_2d(img, (13.2, 13.5), 6.0)
    assert f["success"]
    np.testing.assert_allclose(f["centre"], [14.3, 12.6], atol=1e-4)
    assert f["sigma"] == pytest.approx(1.7, rel=1e-4)
    assert f["amplitude"] == pytest.approx(0.8, rel=1e-4)
    assert f["background"] == pytest.approx(0.1, abs=1e-4)
    # started 9 px from the column with a 3 px disc: the centre may not follow
    far = C.fit_gaussian_2d(img, (5.0, 5.0), 3.0)
    assert not far["success"] or np.hypot(*(far["centre"] - 5.0)) < 3.0
    assert np.abs(far["centre"] - 5.0).max() <= 3.0 + 1e-9
    assert not C.fit_gaussian_2d(np.full((20, 20), 1.0), (10, 10), 4)["success"]
    assert not C.fit_gaussian_2d(img, (100, 100), 4)["success"]


@pytest.mark.parametrize("pixel_A", [0.2, 0.33])
def test_gaussian_fit_polarization_recovers_displacements(pixel_A):
    rng = np.random.default_rng(4)
    img, _, b, disp = lattice((220, 220), pixel_A, rng, origin_A=(0.9, 2.2))
    wins, truth, where = windows(img, b, disp, pixel_A, 30, rng)
    assert (np.linalg.norm(truth, axis=1) > 40).sum() >= 5  # 50 pm cells among them
    for w, t, pos in zip(wins, truth, where):
        P, info = C.gaussian_fit_polarization(w, pixel_A, A_A)
        assert info["reason"] is None and info["success"].all()
        assert np.linalg.norm(info["b_px"] - pos) < 0.5  # the B nearest the centre
        assert np.linalg.norm(P - t) < 1.0  # pm


def test_zero_polarization_lattice_gives_zero():
    rng = np.random.default_rng(5)
    for pixel_A in (0.2, 0.33):
        img, _, b, disp = lattice((180, 180), pixel_A, origin_A=(1.7, 0.4))
        wins, _, _ = windows(img, b, disp, pixel_A, 15, rng)
        P = C.gaussian_fit_polarization_batch(wins, pixel_A, A_A)
        assert np.isfinite(P).all() and np.abs(P).max() < 0.5


def test_noise_error_shrinks_with_dose():
    rng = np.random.default_rng(6)
    clean, _, b, disp = lattice((220, 220), 0.2, rng)
    rmse = {}
    for dose in (1e2, 1e4):
        img = noisy(clean, dose, np.random.default_rng(int(dose)))
        wins, truth, _ = windows(img, b, disp, 0.2, 30, np.random.default_rng(7))
        P = C.gaussian_fit_polarization_batch(wins, 0.2, A_A)
        ok = np.isfinite(P).all(axis=1)
        assert ok.sum() >= 27
        rmse[dose] = float(np.sqrt(np.mean(np.sum((P[ok] - truth[ok]) ** 2, axis=1))))
    assert rmse[1e4] < rmse[1e2]
    assert rmse[1e4] < 1.0 and rmse[1e2] < 10.0  # measured: 0.3, 2.8 pm


def test_bad_windows_give_nan_not_an_exception():
    rng = np.random.default_rng(8)
    w = int(round(2 * A_A / 0.2))
    bad = [rng.poisson(20.0, (w, w)).astype(float) for _ in range(10)]
    bad += [rng.normal(0.0, 1.0, (w, w)) for _ in range(10)]
    bad += [np.zeros((w, w)), np.full((w, w), 5.0), np.full((w, w), np.nan),
            np.ones((2, 2)), np.ones(w), np.ones((w, w), dtype=complex),
            np.array([["a"] * 5] * 5)]
    good, _, _, _ = lattice((w, w), 0.2)
    holed = good.copy()
    holed[3, 3] = np.inf
    bad.append(holed)
    for x in bad:
        P, info = C.gaussian_fit_polarization(x, 0.2, A_A)
        assert P.shape == (2,) and np.isnan(P).all()
        assert isinstance(info["reason"], str) and info["reason"]
    with pytest.raises(ValueError):
        C.gaussian_fit_polarization(good, -1.0, A_A)  # a bad argument still raises


def test_fits_that_are_no_cell_give_nan():
    """B narrow and tall (0.15 Å, 1.5x A): its smoothed peak is dimmer than the
    A columns, so the peak rule takes it, but the fits show a B brighter than
    its A columns and widths 2.3x apart (CELL_CHECKS)."""
    img, _, b, disp = lattice((120, 120), 0.2, amp_b=1.5, sigma_b_A=0.15)
    wins, _, _ = windows(img, b, disp, 0.2, 3, np.random.default_rng(11))
    for w in wins:
        P, info = C.gaussian_fit_polarization(w, 0.2, A_A)
        assert info["success"].all() and np.isnan(P).all()
        assert info["reason"].startswith("fitted columns are not a perovskite cell")


def test_batch_matches_single_windows_and_reports_progress():
    rng = np.random.default_rng(9)
    img, _, b, disp = lattice((160, 160), 0.33, rng)
    wins, _, _ = windows(img, b, disp, 0.33, 5, rng)
    wins = np.concatenate([wins, np.zeros((1,) + wins.shape[1:])])
    calls = []
    P = C.gaussian_fit_polarization_batch(wins, 0.33, A_A, progress=lambda *a: calls.append(a),
                                          every=2)
    assert calls == [(2, 6), (4, 6), (6, 6)]
    assert P.shape == (6, 2) and np.isnan(P[-1]).all()
    for w, p in zip(wins[:-1], P[:-1]):
        np.testing.assert_array_equal(p, C.gaussian_fit_polarization(w, 0.33, A_A)[0])
    with pytest.raises(ValueError, match="shape"):
        C.gaussian_fit_polarization_batch(wins[0], 0.33, A_A)


def test_column_finding_runs_without_scipy_in_the_training_env(tmp_path):
    """The prediction side runs in the TensorFlow environment (no scipy).
    columns.py is loaded by its path: it must need nothing but numpy (the
    package's __init__ is another module's business)."""
    env = Path(os.environ.get("CBEDFLOW_TRAIN_ENV", ROOT / ".venv" / "train"))
    python = env / "bin" / "python"
    if not python.exists():
        pytest.fail(f"training environment not found at {env} (no {python}); build it with "
                    "`make envs` or point CBEDFLOW_TRAIN_ENV at it")
    img, _, _, _ = lattice((90, 80), 0.2, np.random.default_rng(10))
    np.save(tmp_path / "img.npy", img)
    script = f"""
import importlib.util, json, sys
sys.modules["scipy"] = None  # any import of scipy now fails
import numpy as np
spec = importlib.util.spec_from_file_location("columns", "{Path(C.__file__)}")
columns = importlib.util.module_from_spec(spec)
spec.loader.exec_module(columns)
img = np.load("{tmp_path}/img.npy")
b = columns.find_b_sites(img, 0.2, {A_A})
p = columns.find_peaks(columns.smooth(img, 2.0), 6.6)
try:
    columns.fit_gaussian_2d(img, (10, 10), 3)
    fit = "ran"
except ImportError:
    fit = "needs scipy"
print(json.dumps({{"b": b.tolist(), "n_peaks": len(p), "fit": fit,
                  "modules": sorted(m.split(".")[0] for m in sys.modules
                                    if m.startswith(("scipy.", "tensorflow")))}}))
"""
    r = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    here = C.find_b_sites(img, 0.2, A_A)
    assert len(here) >= 6 and out["modules"] == [] and out["fit"] == "needs scipy"
    np.testing.assert_allclose(np.array(out["b"]), here, atol=1e-6)
    assert out["n_peaks"] == len(C.find_peaks(C.smooth(img, 2.0), 6.6))
