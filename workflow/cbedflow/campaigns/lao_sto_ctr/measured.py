"""Measured CTR sets for ``predict``: read, check, resample onto the model's
rod grid, mask what was not measured.

A set is a table of points ``(h, k, L, I, sigma)``: a CSV file with a
header row naming those columns (any order, extra columns ignored; ``#``
lines are comments, ``# a_A = 3.905`` / ``# c_A = 3.905`` give the lattice
constants the (h, k, L) are in), or an HDF5 file with 1-D datasets ``h``,
``k``, ``L``, ``I``, ``sigma`` (attributes ``a_A``, ``c_A`` optional).
Measured rods rarely cover every L: each rod is interpolated linearly in
log10 I onto the model's L values inside its measured coverage; a grid
point is kept only where the interpolation is short: it coincides with a
measured L, or its two measured neighbours are at most two grid steps
apart. Every other point (inside a gap, however close to its edge: at the
edge of a gap next to a Bragg peak log10 I changes by decades within one
step; beyond the measured range by more than half a step) is masked and set to the training set's
mean there (the per-point standardisation then makes it zero: no
information), and the masked fraction is reported.
Intensities are on an arbitrary scale: log10 I is shifted so that its
median over the measured points matches the training set's (the factor is
reported); per-rod scale errors are what the noise augmentation trains for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...forward.ctr import A_STO

COLUMNS = ("h", "k", "L", "I", "sigma")
#: A grid point is kept only if its measured neighbours are at most this many L steps apart.
MAX_GAP_STEPS = 2.0
#: Lattice constants in the metadata may differ from the model's by this fraction.
LATTICE_TOLERANCE = 1e-3


class MeasuredCTRError(ValueError):
    """A measured CTR set that cannot be used (one line)."""


def _read_csv(path: Path) -> tuple[dict, dict]:
    meta, header, rows = {}, None, []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            if "=" in s:
                key, _, value = s[1:].partition("=")
                try:
                    meta[key.strip()] = float(value)
                except ValueError:
                    meta[key.strip()] = value.strip()
            continue
        parts = [p.strip() for p in s.replace(";", ",").split(",")]
        if header is None:
            header = parts
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise MeasuredCTRError(f"{path}: header {header} lacks column(s) "
                                       f"{', '.join(missing)}; expected {', '.join(COLUMNS)}")
            continue
        try:
            rows.append([float(parts[header.index(c)]) for c in COLUMNS])
        except (ValueError, IndexError):
            raise MeasuredCTRError(f"{path}: line {n} {s!r} is not a row of numbers "
                                   f"({', '.join(COLUMNS)})") from None
    if header is None or not rows:
        raise MeasuredCTRError(f"{path}: no data rows (expected a header {', '.join(COLUMNS)} "
                               "and one row per point)")
    table = np.asarray(rows, float)
    return {c: table[:, i] for i, c in enumerate(COLUMNS)}, meta


def _read_h5(path: Path) -> tuple[dict, dict]:
    import h5py

    with h5py.File(path, "r") as f:
        missing = [c for c in COLUMNS if c not in f]
        if missing:
            raise MeasuredCTRError(f"{path}: lacks dataset(s) {', '.join(missing)}; expected "
                                   f"1-D datasets {', '.join(COLUMNS)}")
        cols = {c: np.asarray(f[c][...], float).ravel() for c in COLUMNS}
        meta = {k: (float(v) if np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype,
                                                                    np.number) else v)
                for k, v in f.attrs.items()}
    n = {len(v) for v in cols.values()}
    if len(n) != 1:
        raise MeasuredCTRError(f"{path}: datasets {', '.join(COLUMNS)} differ in length {n}")
    return cols, meta


def read_table(path: str | Path) -> tuple[dict, dict]:
    """Columns ``h, k, L, I, sigma`` and the metadata of a measured set."""
    path = Path(path)
    if not path.exists():
        raise MeasuredCTRError(f"{path}: no such file")
    if path.suffix.lower() in (".h5", ".hdf5", ".nxs"):
        return _read_h5(path)
    if path.suffix.lower() in (".csv", ".txt", ".dat"):
        return _read_csv(path)
    raise MeasuredCTRError(f"{path}: format {path.suffix!r} is not read; valid: .csv (.txt, "
                           ".dat) with a header h, k, L, I, sigma, or .h5 with those datasets")


def interpolation_error(lr: np.ndarray, y: np.ndarray, l_values: np.ndarray) -> np.ndarray:
    """Error estimate of linear interpolation of ``y(lr)`` at ``l_values``:
    ``|y''| (l - l_1)(l_2 - l) / 2`` between measured neighbours ``l_1, l_2``
    (the linear-interpolation remainder), ``|y''|`` the larger of the second
    divided differences at the two neighbours. Zero on a measured point; near
    a Bragg peak, where log10 I bends sharply, it dominates the counting
    error, so a weighted fit does not trust interpolated peak flanks."""
    n = len(lr)
    if n < 3:
        return np.zeros_like(l_values, float)
    slope = np.diff(y) / np.maximum(np.diff(lr), 1e-12)
    d2 = np.abs(2 * np.diff(slope) / np.maximum(lr[2:] - lr[:-2], 1e-12))
    d2 = np.concatenate([d2[:1], d2, d2[-1:]])  # at every measured point
    j = np.clip(np.searchsorted(lr, l_values), 1, n - 1)
    left, right = lr[j - 1], lr[j]
    curv = np.maximum(d2[j - 1], d2[j])
    t = np.clip(l_values - left, 0, None) * np.clip(right - l_values, 0, None)
    return curv * t / 2


def resample(cols: dict, meta: dict, rod_hk, l_values, where: str = "data"
             ) -> tuple[np.ndarray, np.ndarray, dict]:
    """log10 I on the model's grid (n_rods, n_L), the mask of measured grid
    points, and what was done (``info``; its ``sigma_log10`` array is the
    uncertainty of the resampled log10 I for a weighted fit: the
    interpolated ``sigma / (I ln 10)`` and :func:`interpolation_error` in
    quadrature). Raises :class:`MeasuredCTRError` (one line) on anything
    the model cannot take."""
    for key in ("a_A", "c_A"):
        if key in meta:
            v = meta[key]
            if not isinstance(v, float) or abs(v - A_STO) > LATTICE_TOLERANCE * A_STO:
                raise MeasuredCTRError(
                    f"{where}: metadata {key} = {v} but the model's rods are in r.l.u. of "
                    f"SrTiO3 (a = c = {A_STO} Å); convert h, k, L to that lattice first")
    h, k, L, inten, sigma = (cols[c] for c in COLUMNS)
    for name, v in (("h", h), ("k", k), ("L", L), ("I", inten), ("sigma", sigma)):
        bad = np.flatnonzero(~np.isfinite(v))
        if len(bad):
            raise MeasuredCTRError(f"{where}: {name} is not finite at row {bad[0] + 1} "
                                   f"({len(bad)} rows); remove or fix those points")
    bad = np.flatnonzero(inten <= 0)
    if len(bad):
        raise MeasuredCTRError(f"{where}: intensity I = {inten[bad[0]]:g} at row {bad[0] + 1} "
                               f"({len(bad)} rows <= 0); the model takes log10 I, valid: I > 0")
    if np.any(np.abs(h - np.round(h)) > 1e-3) or np.any(np.abs(k - np.round(k)) > 1e-3):
        i = int(np.flatnonzero((np.abs(h - np.round(h)) > 1e-3)
                               | (np.abs(k - np.round(k)) > 1e-3))[0])
        raise MeasuredCTRError(f"{where}: (h, k) = ({h[i]:g}, {k[i]:g}) at row {i + 1} is not "
                               "on a rod; valid: integer h and k")
    l_values = np.asarray(l_values, float)
    step = float(np.median(np.diff(l_values)))
    lo, hi = l_values[0] - step / 2, l_values[-1] + step / 2
    out = np.flatnonzero((L < lo) | (L > hi))
    if len(out):
        raise MeasuredCTRError(f"{where}: L = {L[out[0]]:g} at row {out[0] + 1} is outside the "
                               f"model's grid {l_values[0]:g}..{l_values[-1]:g} "
                               f"({len(out)} rows); crop the data to that range")
    hk = [tuple(int(v) for v in r) for r in rod_hk]
    have = {(int(round(a)), int(round(b))) for a, b in zip(h, k)}
    extra = sorted(have - set(hk))
    if extra:
        raise MeasuredCTRError(f"{where}: rod(s) {', '.join(f'{a}{b}' for a, b in extra)} are "
                               f"not among the model's {len(hk)} rods")
    missing = [r for r in hk if r not in have]
    if missing:
        raise MeasuredCTRError(
            f"{where}: rod(s) {', '.join(f'{a}{b}' for a, b in missing)} missing; the model "
            f"needs all {len(hk)} rods {', '.join(f'{a}{b}' for a, b in hk)}")
    bad = np.flatnonzero(sigma <= 0)
    if len(bad):
        raise MeasuredCTRError(f"{where}: sigma = {sigma[bad[0]]:g} at row {bad[0] + 1} "
                               f"({len(bad)} rows <= 0); valid: sigma > 0 (the uncertainty of I)")
    x = np.zeros((len(hk), len(l_values)))
    sig = np.zeros_like(x)
    mask = np.zeros_like(x, bool)
    for r, (rh, rk) in enumerate(hk):
        sel = (np.round(h) == rh) & (np.round(k) == rk)
        order = np.argsort(L[sel])
        lr, ir = L[sel][order], np.log10(inten[sel][order])
        x[r] = np.interp(l_values, lr, ir)
        sig[r] = np.hypot(np.interp(l_values, lr, sigma[sel][order]
                                    / (inten[sel][order] * np.log(10))),
                          interpolation_error(lr, ir, l_values))
        # keep a grid point on a measured L, or between measured neighbours
        # at most MAX_GAP_STEPS apart (a short interpolation)
        j = np.searchsorted(lr, l_values)
        left = lr[np.clip(j - 1, 0, len(lr) - 1)]
        right = lr[np.clip(j, 0, len(lr) - 1)]
        on_point = np.minimum(np.abs(l_values - left), np.abs(l_values - right)) < 1e-3 * step
        inside = (j > 0) & (j < len(lr)) & (right - left <= MAX_GAP_STEPS * step)
        # beyond the first or last measured L: constant, at most half a step
        end = ((l_values < lr[0]) & (lr[0] - l_values <= step / 2)) | (
            (l_values > lr[-1]) & (l_values - lr[-1] <= step / 2))
        mask[r] = on_point | inside | end
    if not mask.any():
        raise MeasuredCTRError(f"{where}: no grid point lies between measured points at most "
                               f"{MAX_GAP_STEPS:g} L steps apart")
    info = {"points": int(len(L)), "rods": [f"{a}{b}" for a, b in hk],
            "masked_fraction": float(1 - mask.mean()),
            "masked_per_rod": {f"{a}{b}": float(1 - m.mean()) for (a, b), m in zip(hk, mask)},
            "lattice_A": {k: meta[k] for k in ("a_A", "c_A") if k in meta},
            "sigma_log10": sig}
    return x, mask, info


def read_measured(path, options: dict, manifest: dict, task) -> tuple[np.ndarray, dict]:
    """One example (1, points): the measured set resampled onto the model's
    grid, put on the training set's scale, masked points at the training
    mean. ``info`` says how much was masked and which scale was applied."""
    geo = manifest["geometry"]
    cols, meta = read_table(path)
    x, mask, info = resample(cols, meta, geo["rod_hk"], geo["l_values"], where=str(path))
    sigma_log10 = info.pop("sigma_log10")
    sc = manifest.get("input_scaling")
    if sc is None:
        raise MeasuredCTRError(f"{path}: the model has no per-point input scaling; expected a "
                               "model trained by the lao_sto_ctr campaign")
    mean = np.asarray(sc["mean"], float).reshape(x.shape)
    shift = float(np.median((mean - x)[mask]))
    x = np.where(mask, x + shift, mean)
    info.update(scale_factor=float(10 ** shift), l_values=list(geo["l_values"]),
                examples="one: every rod concatenated (rod-major), as in training",
                data={"log10_intensity": x, "mask": mask, "sigma_log10": sigma_log10})
    return x.reshape(1, -1), info
