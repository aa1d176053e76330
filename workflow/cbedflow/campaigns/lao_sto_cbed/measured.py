"""Measured 4D-STEM data for ``predict`` (the LAO/STO campaign's reader).

Input: a 4D array (scan_x, scan_y, kx, ky) with scan_x across the interface,
as a zarr group (array ``cbed``), a ``.npy`` file, or an HDF5 file (dataset
``cbed``); a zarr group or HDF5 file may hold the simultaneously recorded
HAADF signal beside it (``haadf``, shape (scan_x, scan_y)), which places the
window of a model trained with ``crop.align_positions``. Its sampling (probe step along x [Å] and detector pixel size
[mrad]) comes from the file's attributes ``scan_step_A`` /
``angular_sampling_mrad`` or from the command line; both given and different
is an error. Patterns follow abTEM's convention: zero angle at pixel n // 2.

Everything is checked before the model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...predict import PredictError, memory_limit_bytes


def _pair(value, name: str) -> np.ndarray:
    a = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise PredictError(f"{name}={value!r} is not a positive number (or pair [x, y])")
    return a


def _check_array(path: Path, shape: tuple, dtype) -> None:
    """Shape, dtype and size of the declared array, before anything is read."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4:
        raise PredictError(f"{path}: cbed has shape {shape} ({len(shape)} dims); "
                           "expected 4 dims (scan_x, scan_y, kx, ky)")
    if min(shape) < 1 or shape[0] < 2 or min(shape[2:]) < 4:
        raise PredictError(f"{path}: cbed shape {shape} is too small; expected >= 2 "
                           "probe positions along x and patterns of >= 4 x 4 pixels")
    dt = np.dtype(dtype)
    if dt.kind not in "uif":
        raise PredictError(f"{path}: cbed has dtype {dt}; expected intensities as integers "
                           "or floats")
    need = int(np.prod(shape, dtype=np.float64)) * 8  # read as float64
    limit = memory_limit_bytes()
    if need > limit:
        raise PredictError(f"{path}: cbed shape {shape} needs {need / 2**30:.1f} GiB in memory, "
                           f"more than this machine allows ({limit / 2**30:.1f} GiB); crop the "
                           "scan to the interface region")


def _open_npy(path: Path):
    """Memory-map a .npy file after checking its header against its size."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        try:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _fortran, dtype = read(fh)
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, EOFError, TokenError...
            what = "empty" if size == 0 else "not a valid .npy file"
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PredictError(f"{path}: {what} ({why}); expected an array saved with "
                               "numpy.save") from None
        offset = fh.tell()
    if dtype.hasobject:
        raise PredictError(f"{path}: holds Python objects (dtype {dtype}); expected a numeric "
                           "array saved with numpy.save")
    _check_array(path, shape, dtype)
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if size < need:
        raise PredictError(f"{path}: truncated: the header declares {tuple(shape)} {dtype} "
                           f"({need} bytes with the header), the file has {size} bytes")
    return np.load(path, mmap_mode="r")


def load_haadf(path: str | Path, shape: tuple) -> np.ndarray | None:
    """The ``haadf`` array (scan_x, scan_y) beside ``cbed`` in a zarr group or
    HDF5 file, checked against the scan ``shape``; None if there is none."""
    path = Path(path)
    data = None
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if "haadf" in f:
                data = np.asarray(f["haadf"][...], np.float64)
    elif path.is_dir():
        import zarr

        g = zarr.open_group(str(path), mode="r")
        if "haadf" in g:
            data = np.asarray(g["haadf"][...], np.float64)
    if data is None:
        return None
    if data.shape != tuple(shape[:2]):
        raise PredictError(f"{path}: haadf has shape {data.shape}; expected the scan's "
                           f"{tuple(shape[:2])} (scan_x, scan_y)")
    if not np.all(np.isfinite(data)):
        raise PredictError(f"{path}: haadf holds non-finite values; expected finite "
                           "intensities")
    return data


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
              angular_sampling_mrad: float | None = None, negative_floor: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check new data. Returns (cbed (sx, sy, kx, ky) float64,
    scan step [Å] (x, y), angular sampling [mrad] (kx, ky)).

    Shape, dtype and size are checked from the file's header before the data
    is read. Intensities must be finite and non-negative: values in
    [-``negative_floor``, 0) (detector noise after a dark-reference
    subtraction, in counts) are set to 0, anything lower is refused.
    """
    path = Path(path)
    if not path.exists():
        raise PredictError(f"{path}: no such file or directory")
    if not negative_floor >= 0:
        raise PredictError(f"negative floor {negative_floor} is invalid; valid: >= 0 counts")
    attrs: dict = {}
    if path.suffix == ".npy":
        data = _open_npy(path)
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise PredictError(f"{path}: not a readable HDF5 file ({exc})") from None
        with f:
            if "cbed" not in f or not isinstance(f["cbed"], h5py.Dataset):
                raise PredictError(f"{path}: has no dataset 'cbed' (has {sorted(f)}); "
                                   "expected cbed with shape (scan_x, scan_y, kx, ky)")
            _check_array(path, f["cbed"].shape, f["cbed"].dtype)
            try:
                data = f["cbed"][...]
            except OSError as exc:
                raise PredictError(f"{path}: dataset cbed cannot be read ({exc}); the file "
                                   "may be truncated") from None
            attrs = {k: f["cbed"].attrs[k] for k in f["cbed"].attrs}
            attrs.update({k: f.attrs[k] for k in f.attrs if k not in attrs})
    elif path.is_dir():
        import zarr

        try:
            g = zarr.open_group(str(path), mode="r")
        except Exception as exc:  # noqa: BLE001 - any zarr failure means "not a group"
            raise PredictError(f"{path}: not a zarr group ({exc})") from None
        if "cbed" not in g:
            raise PredictError(f"{path}: zarr group has no array 'cbed'; expected cbed with "
                               "shape (scan_x, scan_y, kx, ky)")
        data = g["cbed"]
        _check_array(path, data.shape, data.dtype)
        attrs = dict(g.attrs)
        attrs.update(dict(data.attrs))
    else:
        raise PredictError(f"{path}: unknown format; expected a .npy file, a .h5 file or a "
                           "zarr group directory")
    _check_array(path, data.shape, data.dtype)
    steps = {}
    for key, flag, value in (("scan_step_A", "--scan-step-A", scan_step_A),
                             ("angular_sampling_mrad", "--angular-sampling-mrad",
                              angular_sampling_mrad)):
        have = attrs.get(key)
        if have is None and value is None:
            raise PredictError(f"{path}: sampling {key} is missing; give it as the attribute "
                               f"{key!r} of the data or with {flag}")
        if have is not None and value is not None and not np.allclose(
                _pair(have, key), _pair(value, flag), rtol=1e-3):
            raise PredictError(f"{path}: {flag}={value} does not match the data's {key}={have}")
        steps[key] = _pair(value if have is None else have, key)
    try:
        cbed = np.asarray(data, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - a chunk missing or unreadable
        raise PredictError(f"{path}: cbed cannot be read ({type(exc).__name__}: {exc}); the "
                           "file may be truncated") from None
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
    return cbed, steps["scan_step_A"], steps["angular_sampling_mrad"]


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
    geometry, and what was read. ``options``: ``scan_step_A``,
    ``angular_sampling_mrad``, ``negative_floor`` (None: from the data),
    ``window_start_A`` (None: the window centred on the scan line)."""
    cbed, step, ang = load_scan(path, options.get("scan_step_A"),
                                options.get("angular_sampling_mrad"),
                                options.get("negative_floor") or 0.0)
    average = bool(task.options.get("average_y"))
    start = options.get("window_start_A")
    geo = manifest["geometry"]
    placed = "given" if start is not None else "centred"
    alignment = geo.get("alignment")
    extra = {}
    if alignment and start is None:
        haadf = load_haadf(path, cbed.shape)
        if haadf is None:
            raise PredictError(
                f"{path}: the model places its window by the HAADF signal "
                "(crop.align_positions), and the data has no 'haadf' array (scan_x, scan_y) "
                "beside 'cbed'; add it, or give --window-start-A")
        start, r = aligned_start_A(haadf, float(step[0]), alignment, geo["input_shape"][0],
                                   float(geo["scan_step_A"][0]))
        placed, extra = "aligned to the HAADF reference", {"alignment_correlation": r}
    x = prepare(cbed, step, ang, manifest, average, start)
    info = {"input_shape": list(cbed.shape), "scan_step_A": step.tolist(),
            "angular_sampling_mrad": ang.tolist(),
            "window": {"placed": placed, "start_A": start, **extra},
            "examples": "one per scan_y line" if not average else
                        "one: the patterns averaged over scan_y (as in training)",
            "data": cbed}
    return x, info
