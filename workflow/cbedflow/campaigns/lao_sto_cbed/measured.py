"""Measured 4D-STEM data for ``predict`` (the LAO/STO campaign's reader).

Input: a 4D-STEM scan in any format :mod:`cbedflow.datafiles` reads (numpy,
this project's HDF5/zarr, EMD 1.0/py4DSTEM, HyperSpy .hspy, NCEM/Velox EMD,
Merlin .mib, EMPAD, abTEM zarr), as (scan_x, scan_y, kx, ky) with scan_x
across the interface (``--scan-axis y`` if the file's other scan axis
crosses it). The simultaneously recorded HAADF signal (scan_x, scan_y), from
the same file (``haadf`` beside ``cbed``, or an EMD 1.0 array ``haadf``) or
its own (``--haadf``), places the window of a model trained with
``crop.align_positions``. Calibrations (probe step [Å], detector pixel
[mrad or 1/Å], beam energy [kV], probe semi-angle [mrad]) come from the file
or the command line; both given and different is an error, and energy or
semi-angle different from the model's training is one too. Patterns follow
abTEM's convention: zero angle at pixel n // 2.

Everything is checked before the model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...predict import PredictError


def aligned_start_A(haadf: np.ndarray, step_A: float, alignment: dict, n_window: int,
                    model_step_A: float) -> tuple[float, float]:
    """Where the model's window starts along the scan line [Å] when placed as
    in training (:func:`cbedflow.alignment.profile_match`): the line's HAADF
    profile (averaged over y, resampled to the model's probe step) against
    the reference ``alignment`` of the model; also the correlation reached
    (Pearson r, 1 = the reference's shape)."""
    from ...alignment import profile_match

    template = np.asarray(alignment["template"], np.float64)
    margin = int(alignment["max_shift_positions"])
    c0, c1 = alignment.get("core") or (margin, len(template) - margin)
    have = (haadf.shape[0] - 1) * step_A
    m = int(np.floor(have / model_step_A + 1e-6)) + 1
    profile = resample_scan(haadf.mean(axis=1)[:, None], step_A, m, model_step_A, 0.0)[:, 0]
    centre = (len(template) - n_window) // 2  # the window start of an unshifted line
    # every shift whose compared segment and window both lie on the line
    offsets = [u for u in range(-len(template), m) if 0 <= u + c0
               and u + c1 <= m and 0 <= u + centre <= m - n_window]
    if not offsets:
        raise PredictError(f"the scan line ({m} positions at the model's {model_step_A:g} Å "
                           f"step) is too short to align the model's {len(template)}-position "
                           "HAADF reference; give --window-start-A")
    u, r = profile_match(profile, template, margin, offsets, (c0, c1))
    return (u + centre) * model_step_A, r


def load_scan(path: str | Path, scan_step_A: float | None = None,
              angular_sampling_mrad: float | None = None, negative_floor: float = 0.0,
              options: dict | None = None, model: dict | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check new data (any format of :mod:`cbedflow.datafiles`).
    Returns (cbed (sx, sy, kx, ky) float64, scan step [Å] (x, y), angular
    sampling [mrad] (kx, ky)); :func:`read_scan` also returns the HAADF signal
    and where each calibration came from."""
    opts = dict(options or {}, scan_step_A=scan_step_A,
                angular_sampling_mrad=angular_sampling_mrad, negative_floor=negative_floor)
    cbed, cal, _haadf = read_scan(path, opts, model or {})
    return cbed, cal["scan_step_A"], cal["angular_sampling_mrad"]


def read_scan(path: str | Path, options: dict, model: dict
              ) -> tuple[np.ndarray, dict, np.ndarray | None]:
    """The scan (scan_x, scan_y, kx, ky) float64, its calibration
    (:func:`cbedflow.datafiles.resolve_calibration`: the file's, completed by
    the ``options`` given as flags, checked against the ``model``'s energy
    and probe semi-angle) and its HAADF signal (None without one).

    Shape, dtype and size are checked from the file's header before the data
    is read. Intensities must be finite and non-negative: values in
    [-``negative_floor``, 0) (detector noise after a dark-reference
    subtraction, in counts) are set to 0, anything lower is refused.
    """
    from ...datafiles import read_4dstem, resolve_calibration

    negative_floor = options.get("negative_floor") or 0.0
    if not negative_floor >= 0:
        raise PredictError(f"negative floor {negative_floor} is invalid; valid: >= 0 counts")
    scan = read_4dstem(path, options.get("scan_axis") or "x", options.get("scan_shape"))
    cal = resolve_calibration(path, scan.calibration, options, model)
    cbed = scan.load(path)
    bad = ~np.isfinite(cbed)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise PredictError(f"{path}: cbed holds {int(bad.sum())} non-finite values (first at "
                           f"index {first}); expected finite intensities")
    neg = cbed < -negative_floor
    if neg.any():
        first = tuple(int(i) for i in np.argwhere(neg)[0])
        raise PredictError(
            f"{path}: cbed holds {int(neg.sum())} values below -{negative_floor:g} (first at "
            f"index {first}: {cbed[first]:g}); expected intensities >= 0 (counts), or give "
            "--negative-floor for detector noise after dark subtraction")
    if negative_floor > 0:
        cbed = np.maximum(cbed, 0.0)  # np.asarray may share a read-only memory map
    haadf = scan.haadf
    if options.get("haadf") is not None:
        haadf = load_haadf_file(options["haadf"], cbed.shape, options.get("scan_axis") or "x")
    if haadf is not None and not np.all(np.isfinite(haadf)):
        raise PredictError(f"{path}: haadf holds non-finite values; expected finite "
                           "intensities")
    cal["format"] = scan.format
    return cbed, cal, haadf


def load_haadf_file(path: str | Path, shape: tuple, scan_axis: str = "x") -> np.ndarray:
    """A HAADF image (scan_x, scan_y) recorded with the scan, from its own
    file: ``.npy`` in this project's order, or a TIFF (``tifffile``: rows =
    scan_y, columns = scan_x, as an image of the scan), checked against the
    scan ``shape``."""
    path = Path(path)
    if not path.exists():
        raise PredictError(f"--haadf {path}: no such file")
    if path.suffix == ".npy":
        data = np.load(path)
    elif path.suffix in (".tif", ".tiff"):
        import tifffile

        data = np.asarray(tifffile.imread(path), np.float64).T
    else:
        raise PredictError(f"--haadf {path}: unknown format {path.suffix!r}; expected .npy "
                           "(scan_x, scan_y) or .tif (an image of the scan)")
    data = np.asarray(data, np.float64)
    if scan_axis == "y":
        data = data.T
    if data.shape != tuple(shape[:2]):
        raise PredictError(f"--haadf {path}: shape {data.shape}; expected the scan's "
                           f"{tuple(shape[:2])} (scan_x, scan_y)")
    return data


def _rebin_axis(a: np.ndarray, axis: int, in_edges: np.ndarray, out_edges: np.ndarray
                ) -> np.ndarray:
    """Area-weighted rebinning along ``axis``: the integral of the
    piecewise-constant intensity between ``out_edges``. Hand-written (a
    cumulative sum and ``np.interp``) because scipy's zoom interpolates values
    instead of conserving the counts that the training crop summed."""
    a = np.moveaxis(a, axis, -1)
    cum = np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(a, axis=-1)], axis=-1)
    flat = cum.reshape(-1, cum.shape[-1])
    out = np.stack([np.interp(out_edges, in_edges, row) for row in flat])
    out = np.diff(out, axis=-1).reshape(a.shape[:-1] + (len(out_edges) - 1,))
    return np.moveaxis(out, -1, axis)


def model_pixel_edges(n: int, pattern_px: int, binning: int, sim_sampling: float) -> np.ndarray:
    """Angles [mrad] of the pixel edges of a model input axis: the central
    ``pattern_px`` simulated pixels (zero at n_sim // 2) summed ``binning`` at a time."""
    first = -(pattern_px // 2) - 0.5  # edge of the first cropped pixel, simulated pixels
    return (first + binning * np.arange(n + 1)) * sim_sampling


def resample_patterns(cbed: np.ndarray, angular_sampling_mrad, geometry: dict) -> np.ndarray:
    """Patterns (..., kx, ky) onto the model's detector pixels (summed counts)."""
    n_out = geometry["input_shape"][1:]
    crop = geometry["crop"]
    out = cbed
    for axis, (n_in, s_in, n, s_model) in enumerate(zip(
            cbed.shape[-2:], angular_sampling_mrad, n_out, geometry["angular_sampling_mrad"])):
        in_edges = (np.arange(n_in + 1) - n_in // 2 - 0.5) * s_in
        out_edges = model_pixel_edges(n, crop["pattern_px"], crop["binning"],
                                      s_model / crop["binning"])
        if out_edges[0] < in_edges[0] - 1e-9 or out_edges[-1] > in_edges[-1] + 1e-9:
            need = max(-out_edges[0], out_edges[-1])
            have = min(-in_edges[0], in_edges[-1])
            raise PredictError(
                f"patterns reach +-{have:.1f} mrad along k{'xy'[axis]} ({n_in} pixels of "
                f"{s_in:g} mrad); the model needs +-{need:.1f} mrad")
        out = _rebin_axis(out, out.ndim - 2 + axis, in_edges, out_edges)
    return out


def resample_scan(cbed: np.ndarray, step_A: float, n: int, model_step_A: float,
                  start_A: float | None = None) -> np.ndarray:
    """Linear interpolation along scan x (axis 0) onto ``n`` positions
    ``model_step_A`` apart: the model's window, centred on the scan line
    (``start_A`` None; a window of positions the model was trained on with
    jitter then sees the interface where training put it on average), or
    starting ``start_A`` [Å] after the first probe position."""
    need = (n - 1) * model_step_A
    have = (cbed.shape[0] - 1) * step_A
    if need > have * (1 + 1e-3):
        raise PredictError(f"the scan line spans {have:.2f} Å ({cbed.shape[0]} positions "
                           f"{step_A:g} Å apart); the model needs {need:.2f} Å "
                           f"({n} positions {model_step_A:g} Å apart)")
    x0 = max(0.0, (have - need) / 2) if start_A is None else float(start_A)
    if start_A is not None and (x0 < 0 or x0 + need > have * (1 + 1e-3)):
        raise PredictError(f"a window starting {x0:g} Å into the scan line ends at "
                           f"{x0 + need:.2f} Å; the line spans {have:.2f} Å, valid starts "
                           f"0..{max(0.0, have - need):.2f} Å")
    x_in = np.arange(cbed.shape[0]) * step_A
    x_out = np.minimum(x0 + np.arange(n) * model_step_A, x_in[-1])
    i = np.clip(np.searchsorted(x_in, x_out, side="right") - 1, 0, cbed.shape[0] - 2)
    w = ((x_out - x_in[i]) / step_A).reshape((-1,) + (1,) * (cbed.ndim - 1))
    w = np.where(np.abs(w) < 1e-9, 0.0, np.where(np.abs(w - 1) < 1e-9, 1.0, w))
    return cbed[i] * (1 - w) + cbed[i + 1] * w


def prepare(cbed: np.ndarray, step_A, ang_mrad, manifest: dict, average_y: bool,
            start_A: float | None = None) -> np.ndarray:
    """Examples (lines, positions, kx, ky) in the model's geometry: the
    model's scan window (centred, or from ``start_A`` [Å])."""
    geo = manifest["geometry"]
    n_pos = geo["input_shape"][0]
    x = resample_scan(cbed, float(step_A[0]), n_pos, float(geo["scan_step_A"][0]), start_A)
    x = resample_patterns(x, ang_mrad, geo)  # (n_pos, sy, n, n)
    x = np.moveaxis(x, 1, 0)  # (sy, n_pos, n, n)
    return x.mean(axis=0, keepdims=True) if average_y else x


def read_measured(path, options: dict, manifest: dict, task) -> tuple[np.ndarray, dict]:
    """Examples (lines, positions, kx, ky) of measured data in the model's
    geometry, and what was read. ``options``: the flags (``scan_step_A``,
    ``angular_sampling_mrad``, ``energy_kV``, ``semiangle_mrad``: None = from
    the file), ``negative_floor``, ``scan_axis``, ``scan_shape``, ``haadf`` (a
    separate HAADF file) and ``window_start_A`` (None: placed by the HAADF
    signal for an aligned model, else centred on the scan line)."""
    geo = manifest["geometry"]
    model = dict(geo.get("microscope") or {})
    cbed, cal, haadf = read_scan(path, options, model)
    step, ang = cal["scan_step_A"], cal["angular_sampling_mrad"]
    check_resolution(path, step, ang, geo)
    average = bool(task.options.get("average_y"))
    start = options.get("window_start_A")
    placed = "given" if start is not None else "centred"
    alignment = geo.get("alignment")
    extra = {}
    if alignment and start is None:
        if haadf is None:
            raise PredictError(
                f"{path}: the model places its window by the HAADF signal "
                "(crop.align_positions), and the data has no 'haadf' array (scan_x, scan_y) "
                "beside 'cbed'; add it, or give --window-start-A, or --haadf FILE")
        start, r = aligned_start_A(haadf, float(step[0]), alignment, geo["input_shape"][0],
                                   float(geo["scan_step_A"][0]))
        placed, extra = "aligned to the HAADF reference", {"alignment_correlation": r}
    x = prepare(cbed, step, ang, manifest, average, start)
    info = {"input_shape": list(cbed.shape), "format": cal["format"],
            "scan_step_A": step.tolist(), "angular_sampling_mrad": ang.tolist(),
            "energy_kV": cal.get("energy_kV"), "semiangle_mrad": cal.get("semiangle_mrad"),
            "calibration_sources": cal["sources"],
            "model_microscope": model or "not recorded (model trained before it was)",
            "window": {"placed": placed, "start_A": start, **extra},
            "examples": "one per scan_y line" if not average else
                        "one: the patterns averaged over scan_y (as in training)",
            "data": cbed}
    return x, info


def check_resolution(path, step_A, ang_mrad, geo: dict) -> None:
    """Refuse data sampled more coarsely than the model's input: probe steps
    or detector pixels more than 5 % wider than the model's cannot be
    interpolated to it without inventing signal (finer ones are rebinned)."""
    for what, have, want, unit, fix in (
            ("probe step", np.asarray(step_A, float)[0], float(geo["scan_step_A"][0]), "Å",
             "record the scan with a step <= the model's"),
            ("detector pixel", np.asarray(ang_mrad, float).max(),
             float(np.max(geo["angular_sampling_mrad"])), "mrad",
             "use a camera length giving pixels <= the model's")):
        if have > 1.05 * want:
            raise PredictError(f"{path}: {what} {have:.4g} {unit} is coarser than the model's "
                               f"{want:.4g} {unit} (x{have / want:.2f}); {fix}")
