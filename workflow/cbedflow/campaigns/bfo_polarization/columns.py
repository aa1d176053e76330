"""Atomic columns in [001]pc HAADF-STEM images of perovskites, and the
traditional polarization estimate from 2D-Gaussian column fits (Nelson et al.
2011; Ghosh et al.): the baseline the network is compared against.

In HAADF along [001]pc the A columns (Bi, bright) sit at the cell corners
(i a, j a), the B columns (Fe, dimmer) at the centres ((i + 1/2) a, (j + 1/2) a);
O is invisible. The polarization estimate of one cell is the vector from the
mean of its four A columns' fitted centres to its B column's fitted centre, in
pm. That is the B-site off-centring delta; in BiFeO3 the spontaneous
polarization is antiparallel to it (Nelson et al. 2011): this module returns
delta as it is and leaves any sign convention to the caller.

Conventions: an image is a 2D array indexed [x, y] (axis 0 = x, axis 1 = y)
with square pixels of ``pixel_A`` Å; positions are float (x, y) in pixels,
pixel (i, j)'s centre at (i, j). The lattice's [100]pc must lie along x (within
about 10 degrees: the B test looks for A columns at (±a/2, ±a/2)).

Column finding (``smooth``, ``find_peaks``, ``find_b_sites``) is numpy only,
because prediction runs in the TensorFlow environment, which has no scipy;
only ``fit_gaussian_2d`` and the polarization functions built on it need
scipy (``scipy.optimize.least_squares``, imported inside the function).

Why hand-written and not scikit-image (``peak_local_max``) or atomap: neither
is in our environments (scikit-image is absent from both; atomap is GPL and
pulls in hyperspy and its stack), and what is needed is small: an FFT
smoothing, a 3x3 max filter with thinning, one local lattice rule and a
five-parameter least-squares fit.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Smoothing before peak finding, in units of a (0.1 a ≈ 0.4 Å for BiFeO3):
#: it averages Poisson noise over ~2 Å² (~50 pixels at 0.2 Å) and keeps the
#: dim B maximum apart from the bright A columns (see ``find_b_sites``).
SMOOTH_FRAC = 0.1
#: Minimum distance between two peaks, in units of a (A-B spacing is a/√2).
MIN_DISTANCE_FRAC = 1.0 / 3.0
#: How far an A peak may lie from its predicted position B + (±a/2, ±a/2),
#: in units of a: the B off-centring (up to ~0.13 a = 50 pm) plus the shift
#: of a column at the image edge by the smoothing (up to ~0.05 a inside the
#: image, more for a column centred outside; see ``smooth``).
TOL_FRAC = 0.25
#: Radius, in units of a, around an accepted B within which every peak but
#: its four corners is dimmer than the dimmest corner (the next A columns are
#: at 1.58 a; in pure noise some brighter maximum is nearly always there).
EXCLUSIVE_FRAC = 1.25
#: The four A corners of a cell, in units of a, relative to its B column;
#: the order of ``info['a_px']`` and of the fits after B.
CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
CORNER_NAMES = ("A(-x,-y)", "A(-x,+y)", "A(+x,-y)", "A(+x,+y)")


def smooth(image: np.ndarray, sigma_px: float, pad: str = "dark") -> np.ndarray:
    """Gaussian smoothing by FFT (numpy only).

    The image is padded by ``ceil(4 sigma)`` pixels before the FFT:

    - ``'dark'`` (default): a constant, the image's 10th percentile (the dark
      level between the columns of a HAADF image). A column inside the image
      keeps its smoothed peak within ~0.05 a of its centre (pulled inwards a
      little by the dark edge); a column centred outside peaks on the edge.
    - ``'reflect'``: half-sample mirror (``np.pad(mode='symmetric')``). A column
      within ~1.5 smoothing widths of the edge merges with its mirror image
      and its peak is pulled onto the edge (measured: up to 0.1 a at
      0.2 Å/pixel), which misplaces the A corners that ``find_b_sites`` checks.
    - ``'periodic'``: no padding. Only for images that hold whole cells; for
      crops it pulls the opposite edge's columns into the border.

    Parameters
    ----------
    image : ndarray, shape (nx, ny)
        Intensities (any units), finite.
    sigma_px : float
        Standard deviation of the Gaussian kernel [pixels]; <= 0 returns a copy.
    pad : {'dark', 'reflect', 'periodic'}
        How the image is continued beyond its edges.

    Returns
    -------
    ndarray, shape (nx, ny), float
        The smoothed image, same units (the kernel has unit integral).
    """
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"smooth: a 2D image is needed, got shape {img.shape}")
    if pad not in ("dark", "reflect", "periodic"):
        raise ValueError(f"smooth: pad must be 'dark', 'reflect' or 'periodic', not {pad!r}")
    if not sigma_px > 0 or img.size == 0:
        return img.copy()
    w = 0 if pad == "periodic" else int(np.ceil(4.0 * sigma_px))
    if pad == "dark":
        padded = np.pad(img, w, mode="constant", constant_values=np.percentile(img, 10))
    else:
        padded = np.pad(img, w, mode="symmetric")
    fx = np.fft.fftfreq(padded.shape[0])[:, None]
    fy = np.fft.rfftfreq(padded.shape[1])[None, :]
    transfer = np.exp(-2.0 * np.pi ** 2 * sigma_px ** 2 * (fx ** 2 + fy ** 2))
    out = np.fft.irfft2(np.fft.rfft2(padded) * transfer, s=padded.shape)
    return out[w:w + img.shape[0], w:w + img.shape[1]]


def _filter(img: np.ndarray, r: int, op: str) -> np.ndarray:
    """Max (op='max') or min of the (2r+1)^2 neighbourhood of every pixel;
    outside the image counts as -inf (max) or +inf (min). Separable."""
    fill = -np.inf if op == "max" else np.inf
    padded = np.pad(img, r, mode="constant", constant_values=fill)
    k = 2 * r + 1
    reduce = np.max if op == "max" else np.min
    rows = reduce(sliding_window_view(padded, k, axis=0), axis=-1)
    return reduce(sliding_window_view(rows, k, axis=1), axis=-1)


def _subpixel(img: np.ndarray, idx: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Sub-pixel offsets of the maxima at integer ``idx`` (m, 2): a parabola
    through the 3 pixels along each axis, fitted to log(value - base) (exact
    for a Gaussian on a background ``base``) where all three stand clear of
    ``base``, to the values otherwise; 0 on the image's edge. Clipped to
    ±0.5 pixel."""
    off = np.zeros(idx.shape, dtype=float)
    for ax in (0, 1):
        n = img.shape[ax]
        inner = (idx[:, ax] > 0) & (idx[:, ax] < n - 1)
        if not inner.any():
            continue
        p = idx[inner]
        step = np.zeros(2, dtype=int)
        step[ax] = 1
        lo, hi = p - step, p + step
        vm, v0, vp = img[lo[:, 0], lo[:, 1]], img[p[:, 0], p[:, 1]], img[hi[:, 0], hi[:, 1]]
        b = base[p[:, 0], p[:, 1]]
        height = v0 - b
        use_log = (np.minimum(vm, vp) - b) > 0.01 * height
        with np.errstate(divide="ignore", invalid="ignore"):
            lm = np.where(use_log, np.log(np.maximum(vm - b, 1e-300)), vm)
            l0 = np.where(use_log, np.log(np.maximum(v0 - b, 1e-300)), v0)
            lp = np.where(use_log, np.log(np.maximum(vp - b, 1e-300)), vp)
            den = lm - 2.0 * l0 + lp
            d = np.where(den < 0, 0.5 * (lm - lp) / den, 0.0)
        off[inner, ax] = np.clip(np.nan_to_num(d), -0.5, 0.5)
    return off


def _thin(idx: np.ndarray, min_distance_px: float) -> np.ndarray:
    """Greedy thinning of integer peak positions ``idx`` (m, 2), brightest
    first: a peak closer than ``min_distance_px`` (Euclidean) to a kept one is
    dropped. Returns the kept rows' mask (a hash grid of cell
    ``min_distance_px`` keeps it linear in m)."""
    d = float(min_distance_px)
    keep = np.zeros(len(idx), dtype=bool)
    grid: dict[tuple[int, int], list[int]] = {}
    keys = np.floor(idx / d).astype(int)
    for m in range(len(idx)):
        kx, ky = int(keys[m, 0]), int(keys[m, 1])
        near = [k for gx in (kx - 1, kx, kx + 1) for gy in (ky - 1, ky, ky + 1)
                for k in grid.get((gx, gy), ())]
        if near and (np.hypot(*(idx[near] - idx[m]).T) < d).any():
            continue
        keep[m] = True
        grid.setdefault((kx, ky), []).append(m)
    return keep


def _peaks(image: np.ndarray, min_distance_px: float, threshold: float | None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Refined peak positions (m, 2) and their pixel values (m,), brightest
    first; see ``find_peaks``."""
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"find_peaks: a 2D image is needed, got shape {img.shape}")
    empty = np.zeros((0, 2)), np.zeros(0)
    finite = np.isfinite(img)
    if img.size == 0 or not finite.any():
        return empty
    work = np.where(finite, img, -np.inf)
    d = max(1.0, float(min_distance_px))
    nbmax = _filter(work, 1, "max")
    nbmin = _filter(np.where(finite, img, np.inf), max(1, int(round(d))), "min")
    mask = finite & (work == nbmax) & (work > nbmin)  # a flat neighbourhood is no peak
    if threshold is not None:
        lo, hi = np.min(img[finite]), np.max(img[finite])
        mask &= work >= lo + float(threshold) * (hi - lo)
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return empty
    vals = work[idx[:, 0], idx[:, 1]]
    order = np.lexsort((idx[:, 1], idx[:, 0], -vals))
    idx, vals = idx[order], vals[order]
    keep = _thin(idx, d)
    idx, vals = idx[keep], vals[keep]
    pos = idx + _subpixel(work, idx, nbmin)
    return pos, vals


def find_peaks(image: np.ndarray, min_distance_px: float,
               threshold: float | None = None) -> np.ndarray:
    """Local maxima of an image, refined to sub-pixel (numpy only).

    A candidate is a pixel equal to the maximum of its 3x3 neighbourhood
    (``sliding_window_view`` on the image padded with -inf, so edge pixels can
    be candidates) and above the minimum of its (2r+1)^2 neighbourhood,
    r = round(``min_distance_px``) (flat regions give none). Candidates closer
    than ``min_distance_px`` (Euclidean) to a brighter kept one are then
    dropped, brightest first. Why not the maximum over the (2r+1)^2
    neighbourhood itself: a square reaches √2 further along its diagonals, and
    in a perovskite the bright A columns sit on the diagonals of the dim B at
    a/√2; with r = a/3 the square's corner lies on the flank of an A, and a B
    displaced towards that A (or a noisy one) is lost (seen at 0.33 Å/pixel
    even with r = a/6).

    Each peak is refined by a parabola through its 3 pixels along x and along
    y, fitted to the logarithm of the value above the local minimum (within
    ``min_distance_px``; exact for a Gaussian column on a flat background;
    plain values where the log is ill conditioned); offsets are clipped to
    ±0.5 pixel, none across the image edge.

    Parameters
    ----------
    image : ndarray, shape (nx, ny)
        Intensities; non-finite pixels are never peaks.
    min_distance_px : float
        Smallest distance between two peaks [pixels] (at least 1).
    threshold : float, optional
        Relative threshold in [0, 1]: keep peaks with value >= min + threshold
        (max - min) of the image. None keeps all.

    Returns
    -------
    ndarray, shape (n, 2), float
        Peak positions (x, y) [pixels], brightest first.
    """
    return _peaks(image, min_distance_px, threshold)[0]


def _classify(image: np.ndarray, a_px: float, smooth_frac: float, tol_frac: float,
              threshold: float | None) -> dict:
    """The B columns among the peaks of an image (finite, 2D); see
    ``find_b_sites`` for the rule. Peaks are found in the image smoothed with
    ``pad='dark'`` (positions of columns near the edge stay put); their levels
    are read from the image smoothed with ``pad='reflect'`` (an edge column is
    not dimmed by the dark padding).

    Returns a dict: ``peaks`` (m, 2) [px] (brightest first), ``values`` (m,)
    levels, ``b`` (k,) indices of the accepted B peaks, ``corners`` (k, 4)
    indices of their A peaks (order of ``CORNERS``), ``reason`` (None when a
    B was found, else why not)."""
    sigma = smooth_frac * a_px
    tol_px = tol_frac * a_px
    pos, _ = _peaks(smooth(image, sigma, "dark"), MIN_DISTANCE_FRAC * a_px, threshold)
    ij = np.round(pos).astype(int)
    vals = smooth(image, sigma, "reflect")[ij[:, 0], ij[:, 1]]
    out = {"peaks": pos, "values": vals, "b": np.zeros(0, dtype=int),
           "corners": np.zeros((0, 4), dtype=int), "reason": None}
    if len(pos) < 5:
        out["reason"] = f"{len(pos)} peaks (a cell needs 5)"
        return out
    radius = EXCLUSIVE_FRAC * a_px
    b_ok, corners = [], []
    for start in range(0, len(pos), 32):  # chunks bound the (k, 4, m) distances
        d = np.arange(start, min(start + 32, len(pos)))
        pred = pos[d][:, None, :] + a_px * CORNERS[None, :, :]
        dist = np.linalg.norm(pred[:, :, None, :] - pos[None, None, :, :], axis=-1)
        dist = np.where(vals[None, None, :] > vals[d][:, None, None], dist, np.inf)
        near = np.argmin(dist, axis=2)  # (k, 4): nearest brighter peak per corner
        ok = (np.take_along_axis(dist, near[..., None], axis=2)[..., 0] <= tol_px).all(axis=1)
        # Within EXCLUSIVE_FRAC a, every other peak is dimmer than the dimmest corner.
        around = np.linalg.norm(pos[d][:, None, :] - pos[None, :, :], axis=-1) < radius
        around[np.arange(len(d)), d] = False
        np.put_along_axis(around, near, False, axis=1)
        floor = vals[near].min(axis=1)
        ok &= ~(around & (vals[None, :] >= floor[:, None])).any(axis=1)
        ok &= np.array([len(set(c)) == 4 for c in near.tolist()], dtype=bool)
        b_ok.append(d[ok])
        corners.append(near[ok])
    b = np.concatenate(b_ok)
    corners_arr = np.concatenate(corners)
    if len(b) == 0:
        out["reason"] = ("no peak has brighter peaks at its four corners (±a/2, ±a/2) "
                         f"and only dimmer ones elsewhere within {EXCLUSIVE_FRAC} a")
        return out
    # Two accepted B closer than a/2 (a noise maximum on a B's flank): keep the
    # brighter (peaks, hence b, are brightest first).
    keep = _thin(pos[b], 0.5 * a_px)
    out["b"], out["corners"] = b[keep], corners_arr[keep]
    return out


def _check_scales(pixel_A: float, a_A: float) -> float:
    if not (np.isfinite(pixel_A) and pixel_A > 0 and np.isfinite(a_A) and a_A > 0):
        raise ValueError(f"pixel_A and a_A must be positive, got {pixel_A}, {a_A}")
    a_px = a_A / pixel_A
    if a_px < 4:
        raise ValueError(f"a = {a_px:.2f} pixels: too coarse to resolve A and B columns")
    return a_px


def find_b_sites(image: np.ndarray, pixel_A: float, a_A: float,
                 smooth_frac: float = SMOOTH_FRAC, tol_frac: float = TOL_FRAC,
                 threshold: float | None = None) -> np.ndarray:
    """The B (Fe) columns of a [001]pc HAADF image of a perovskite with bright
    A columns (numpy only).

    Steps: smooth with sigma = ``smooth_frac`` a; ``find_peaks`` with minimum
    distance a/3 (the A-B spacing is a/√2); keep a peak as B when (i) at each
    of its four corners B + (±a/2, ±a/2) a brighter peak lies within
    ``tol_frac`` a, and (ii) every other peak within ``EXCLUSIVE_FRAC`` a
    (1.25 a; the next A columns are at 1.58 a) is dimmer than the dimmest of
    those corners; of two such peaks closer than a/2 keep the brighter.
    Return those not closer than a/2 to the image border. Non-finite pixels
    are replaced by the median of the others.

    Why a local rule and not a global two-means split of the peak
    intensities into A and B (tried first): in 2-cell windows the partly
    visible edge columns blur the two clusters, and with B/A = 0.7 the B
    joined the bright cluster in 26 of 40 windows; the rule above needs no
    split, and noise maxima (vacuum, amorphous layers; 0 of 1200 noise
    windows, 0-1 false B in a 300 x 300 noise image) fail (ii).

    Why 0.1 a of smoothing and not more: smoothing widens every column
    (s² = s_col² + s_smooth²) until the B maximum merges into the flank of
    the nearest A at a/√2. For s_col = 0.35 Å the saddle between B and that
    A lies below the B peak by 0.57-0.90 of B's height at 0.1 a (B/A 0.15-0.35,
    B off-centre by 0-50 pm towards the A), by 0.04-0.59 at 0.15 a, and at
    0.25 a (1 Å) the B is no maximum at all.

    Where it fails: every A column must be brighter than its B and its
    neighbouring B columns. When the intensities are close (B/A ≳ 0.9,
    e.g. SrRuO3, Sr 38 vs Ru 44; or B/A ~0.7 under strong noise) B columns
    are missed; in a B-bright compound (e.g. KTaO3, NaNbO3) the roles swap
    silently and the 'B' returned are the A columns. A-site dopants that dim
    some A columns (Sm in BiFeO3) are fine while every A stays brighter than
    the B columns around it. The lattice must be aligned with the image axes
    (within ~10 degrees) and not sheared by more than ``tol_frac`` a over a
    cell; columns wider than ~0.5 Å with a dim B (B/A ≲ 0.2) merge as above.

    Parameters
    ----------
    image : ndarray, shape (nx, ny)
        HAADF intensities (any units).
    pixel_A : float
        Pixel size [Å] (square pixels).
    a_A : float
        Pseudocubic lattice parameter [Å] (3.965 for BiFeO3).
    smooth_frac : float
        Smoothing sigma in units of a.
    tol_frac : float
        Tolerance on the A corner positions in units of a.
    threshold : float, optional
        Relative peak threshold passed to ``find_peaks``.

    Returns
    -------
    ndarray, shape (n, 2), float
        B positions (x, y) [pixels], peaks of the smoothed image, sorted by x
        then y; (0, 2) when none.
    """
    a_px = _check_scales(pixel_A, a_A)
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"find_b_sites: a 2D image is needed, got shape {img.shape}")
    finite = np.isfinite(img)
    if not finite.any():
        return np.zeros((0, 2))
    if not finite.all():
        img = np.where(finite, img, np.median(img[finite]))
    cls = _classify(img, a_px, smooth_frac, tol_frac, threshold)
    b = cls["peaks"][cls["b"]]
    margin = 0.5 * a_px
    upper = np.array(img.shape, dtype=float) - 1.0 - margin
    b = b[(b >= margin).all(axis=1) & (b <= upper).all(axis=1)]
    return b[np.lexsort((b[:, 1], b[:, 0]))] if len(b) else np.zeros((0, 2))


def fit_gaussian_2d(image: np.ndarray, centre_px, radius_px: float) -> dict:
    """Least-squares fit of A exp(-|r - r0|²/(2 s²)) + c to the pixels within
    ``radius_px`` of ``centre_px`` (needs scipy: ``least_squares``, 'trf',
    analytic Jacobian).

    Bounds: r0 within ±``radius_px`` of the initial centre along x and y,
    s in [0.25, 2 ``radius_px``] pixels, A >= 0. The fit counts as a success
    when the optimizer converged, every value is finite, A > 0, the centre
    moved less than ``radius_px`` (Euclidean) and s is not on a bound.

    Parameters
    ----------
    image : ndarray, shape (nx, ny)
        Intensities; non-finite pixels are left out.
    centre_px : array_like, shape (2,)
        Initial centre (x, y) [pixels]; also the centre of the fitted disc.
    radius_px : float
        Radius of the fitted disc [pixels].

    Returns
    -------
    dict
        ``centre`` ndarray (2,) (x, y) [pixels], ``sigma`` [pixels],
        ``amplitude`` and ``background`` [image units], ``success`` bool,
        ``n_pixels`` (pixels fitted), ``rms`` (rms residual, image units).
        On failure the numbers are NaN.
    """
    from scipy.optimize import least_squares

    img = np.asarray(image, dtype=float)
    c0 = np.asarray(centre_px, dtype=float).reshape(2)
    r = float(radius_px)
    out = {"centre": np.full(2, np.nan), "sigma": np.nan, "amplitude": np.nan,
           "background": np.nan, "success": False, "n_pixels": 0, "rms": np.nan}
    if img.ndim != 2 or not (np.isfinite(c0).all() and np.isfinite(r) and r > 0):
        return out
    lo = np.maximum(np.floor(c0 - r), 0).astype(int)
    hi = np.minimum(np.ceil(c0 + r), np.array(img.shape) - 1).astype(int)
    if (hi < lo).any():
        return out
    x, y = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1),
                       indexing="ij")
    v = img[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1]
    inside = ((x - c0[0]) ** 2 + (y - c0[1]) ** 2 <= r * r) & np.isfinite(v)
    x, y, v = x[inside].astype(float), y[inside].astype(float), v[inside]
    out["n_pixels"] = int(v.size)
    if v.size < 6:
        return out
    c_init, amp = float(v.min()), float(v.max() - v.min())
    if not amp > 0:
        return out
    s_min, s_max = 0.25, 2.0 * r
    p0 = [c0[0], c0[1], float(np.clip(r / 2.5, 2 * s_min, s_max / 2)), amp, c_init]
    lower = [c0[0] - r, c0[1] - r, s_min, 0.0, -np.inf]
    upper = [c0[0] + r, c0[1] + r, s_max, np.inf, np.inf]

    def parts(p):
        dx, dy = x - p[0], y - p[1]
        rr = dx * dx + dy * dy
        return dx, dy, rr, np.exp(-rr / (2.0 * p[2] ** 2))

    def residual(p):
        g = parts(p)[3]
        return p[3] * g + p[4] - v

    def jacobian(p):
        dx, dy, rr, g = parts(p)
        ag, s2 = p[3] * g, p[2] ** 2
        return np.column_stack([ag * dx / s2, ag * dy / s2, ag * rr / (s2 * p[2]), g,
                                np.ones_like(g)])

    try:
        res = least_squares(residual, p0, jac=jacobian, bounds=(lower, upper),
                            method="trf", x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return out
    p = res.x
    ok = (res.status > 0 and bool(np.isfinite(p).all()) and p[3] > 0
          and np.hypot(p[0] - c0[0], p[1] - c0[1]) < r
          and s_min * 1.001 < p[2] < s_max * 0.999)
    out.update(centre=np.array(p[:2]), sigma=float(p[2]), amplitude=float(p[3]),
               background=float(p[4]), success=bool(ok),
               rms=float(np.sqrt(np.mean(res.fun ** 2))))
    return out


#: What ``gaussian_fit_polarization`` asks of the five fits: the largest
#: spread of the fitted widths about their median (factor), the largest
#: offset of an A centre from the ideal square (units of a), the largest B
#: off-centring (units of a).
CELL_CHECKS = {"sigma_factor": 2.0, "square_frac": 0.15, "offcentre_frac": TOL_FRAC}


def _not_a_cell(centres: np.ndarray, sigmas: np.ndarray, amps: np.ndarray,
                a_px: float) -> str:
    """Why the fitted columns (B first, then A in ``CORNERS`` order) are not
    one perovskite cell; '' when they are."""
    if not (amps[1:] > amps[0]).all():
        return "an A column is not brighter than B"
    med = np.median(sigmas)
    if not ((sigmas <= CELL_CHECKS["sigma_factor"] * med)
            & (sigmas >= med / CELL_CHECKS["sigma_factor"])).all():
        return (f"column widths {np.round(sigmas, 2).tolist()} px differ by more than "
                f"{CELL_CHECKS['sigma_factor']}x")
    mean_a = centres[1:].mean(axis=0)
    square = np.linalg.norm(centres[1:] - mean_a - a_px * CORNERS, axis=1).max()
    if square > CELL_CHECKS["square_frac"] * a_px:
        return f"A columns {square / a_px:.2f} a off a square of side a"
    off = np.linalg.norm(centres[0] - mean_a)
    if off > CELL_CHECKS["offcentre_frac"] * a_px:
        return f"B {off / a_px:.2f} a off the A columns' centre"
    return ""


def gaussian_fit_polarization(window: np.ndarray, pixel_A: float, a_A: float,
                              radius_frac: float = 0.3) -> tuple[np.ndarray, dict]:
    """The traditional polarization estimate of one window: B-site
    off-centring from 2D-Gaussian fits of one cell's five columns.

    The cell: among the B columns that ``find_b_sites``' rule accepts in the
    window (here at any distance from the border), the one nearest the
    window centre ((nx-1)/2, (ny-1)/2). Its four A columns start at the
    brighter peaks matched to B + (±a/2, ±a/2) (within 0.25 a of those
    predicted positions; a peak is a better start than the prediction, which
    is off by the B's own displacement), the B at its smoothed peak. Each of
    the five is refined by ``fit_gaussian_2d`` on the unsmoothed window, disc
    radius ``radius_frac`` a, and P = (B_fit - mean(A_fits)) ``pixel_A`` 100.

    The five fits must then look like a cell (``CELL_CHECKS``): every A
    amplitude above B's, widths within a factor 2 of their median, the A
    centres on a square of side a (each within 0.15 a, which allows a lattice
    rotated by up to ~10 degrees) and B within 0.25 a of their mean: a last
    guard against noise maxima that pass the peak rule (a few in 1000
    pure-noise windows; none passed these checks).

    A window at least 2 a wide holds a complete cell: the nearest B lies
    within a/2 of the centre along each axis, its A columns within a, i.e.
    at most on the window's edge pixels (a column there is fitted from the
    part of its disc inside the window). A narrower window may hold none;
    then P is NaN. If the nearest B is refused (a corner not found), the
    next nearest accepted one is used; ``info['b_px']`` says which.

    Bias: each column is fitted alone, so the tails of its neighbours inside
    the disc pull it. For columns of s = 0.35 Å that is < 0.01 pm; for
    s = 0.5 Å about 0.5 pm rms (B off-centre by up to 50 pm).

    Parameters
    ----------
    window : ndarray, shape (nx, ny)
        HAADF intensities of one window (any units).
    pixel_A : float
        Pixel size [Å] (square pixels).
    a_A : float
        Pseudocubic lattice parameter [Å].
    radius_frac : float
        Fit disc radius in units of a (0.3 a ≈ 1.2 Å: the whole column, none
        of the next one, at a/√2).

    Returns
    -------
    P : ndarray, shape (2,)
        (Px, Py) [pm]: fitted B centre minus the mean fitted A centre; NaN
        when no cell is found or every fit fails (never raises for a bad
        window); a column whose fit fails takes its smoothed peak position.
    info : dict
        ``b_px`` (2,) and ``a_px`` (4, 2) fitted centres [pixels] (A in the
        order of ``CORNERS``), ``b_init_px``/``a_init_px`` their starts,
        ``sigma_px`` (5,) fitted widths [pixels] and ``amplitude`` (5,) (in
        units of the window's max - min; B first), ``success`` (5,) bool,
        ``failed`` names of the failed fits, ``reason`` (None or why P is NaN).
    """
    a_px = _check_scales(pixel_A, a_A)
    P = np.full(2, np.nan)
    info = {"b_px": np.full(2, np.nan), "a_px": np.full((4, 2), np.nan),
            "b_init_px": np.full(2, np.nan), "a_init_px": np.full((4, 2), np.nan),
            "sigma_px": np.full(5, np.nan), "amplitude": np.full(5, np.nan),
            "success": np.zeros(5, dtype=bool),
            "failed": [], "fallback": [], "reason": None}
    w = np.asarray(window)
    if w.ndim != 2 or min(w.shape) < 3:
        info["reason"] = f"window of shape {w.shape} is not a 2D image"
        return P, info
    if not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
        info["reason"] = f"window of dtype {w.dtype} is not real"
        return P, info
    w = w.astype(float)
    if not np.isfinite(w).all():
        info["reason"] = "window has non-finite pixels"
        return P, info
    span = float(w.max() - w.min())
    if not (np.isfinite(span) and span > 0):
        info["reason"] = "window is flat"
        return P, info
    w = (w - w.min()) / span  # the fits' scale, whatever the window's units
    cls = _classify(w, a_px, SMOOTH_FRAC, TOL_FRAC, None)
    if cls["reason"] is not None:
        info["reason"] = cls["reason"]
        return P, info
    bpos = cls["peaks"][cls["b"]]
    centre = (np.array(w.shape, dtype=float) - 1.0) / 2.0
    k = int(np.argmin(np.linalg.norm(bpos - centre, axis=1)))
    starts = np.vstack([bpos[k], cls["peaks"][cls["corners"][k]]])
    info["b_init_px"], info["a_init_px"] = starts[0].copy(), starts[1:].copy()
    fits = [fit_gaussian_2d(w, s, radius_frac * a_px) for s in starts]
    centres = np.array([f["centre"] for f in fits])
    info["b_px"], info["a_px"] = centres[0], centres[1:]
    info["sigma_px"] = np.array([f["sigma"] for f in fits])
    info["success"] = np.array([f["success"] for f in fits])
    info["amplitude"] = np.array([f["amplitude"] for f in fits])
    info["failed"] = [n for n, f in zip(("B",) + CORNER_NAMES, fits) if not f["success"]]
    failed = ~info["success"]
    if failed.all():
        info["reason"] = "fit failed: " + ", ".join(info["failed"])
        return P, info
    # a fit that fails (a noisy column: the centre runs to the disc's edge or
    # the width to a bound) falls back to the column's smoothed peak, as an
    # analyst keeps a column the fit loses; those are named in info['fallback']
    info["fallback"] = list(info["failed"])
    centres[failed] = starts[failed]
    sm = smooth(w, SMOOTH_FRAC * a_px)
    idx = np.clip(np.rint(starts).astype(int), 0, np.array(w.shape) - 1)
    peak = sm[idx[:, 0], idx[:, 1]] - float(np.median(sm))
    sig = np.where(failed, np.nanmedian(info["sigma_px"][~failed]), info["sigma_px"])
    amp = np.where(failed, peak, info["amplitude"])
    info["b_px"], info["a_px"] = centres[0], centres[1:]
    bad = _not_a_cell(centres, sig, amp, a_px)
    if bad:
        info["reason"] = "fitted columns are not a perovskite cell: " + bad
        return P, info
    P = (centres[0] - centres[1:].mean(axis=0)) * pixel_A * 100.0
    return P, info


def gaussian_fit_polarization_batch(windows: np.ndarray, pixel_A: float, a_A: float,
                                    radius_frac: float = 0.3,
                                    progress: Callable[[int, int], None] | None = None,
                                    every: int = 500) -> np.ndarray:
    """``gaussian_fit_polarization`` of every window.

    Parameters
    ----------
    windows : ndarray, shape (n, nx, ny)
        HAADF windows.
    pixel_A, a_A, radius_frac
        As in ``gaussian_fit_polarization`` ([Å], [Å], units of a).
    progress : callable, optional
        Called as ``progress(done, n)`` every ``every`` windows and at the end.
    every : int
        Windows between progress calls.

    Returns
    -------
    ndarray, shape (n, 2)
        (Px, Py) [pm] per window; NaN where no estimate.
    """
    w = np.asarray(windows)
    if w.ndim != 3:
        raise ValueError(f"windows must have shape (n, nx, ny), got {w.shape}")
    _check_scales(pixel_A, a_A)
    n = len(w)
    out = np.full((n, 2), np.nan)
    every = max(1, int(every))
    for i in range(n):
        out[i] = gaussian_fit_polarization(w[i], pixel_A, a_A, radius_frac)[0]
        if progress is not None and ((i + 1) % every == 0 or i + 1 == n):
            progress(i + 1, n)
    return out
