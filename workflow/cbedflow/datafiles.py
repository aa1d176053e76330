"""Measured 4D-STEM files, read through the libraries that write them.

:func:`read_4dstem` returns a :class:`FourDScan`: the array in this
project's order (scan_x, scan_y, kx, ky) with scan_x across the feature the
model looks at (the LAO/STO interface), the calibrations the file carries
(:class:`Calibration`: probe step [Å], detector pixel [mrad] or [1/Å], beam
energy [kV], probe semi-angle [mrad]) and, where the file holds one, the
simultaneously recorded HAADF signal (scan_x, scan_y).

Formats (a registry, :data:`FORMATS`, keyed by what the path looks like):

========================  ===================================================
``.npy``                  numpy (no calibrations: flags)
``.h5``/``.hdf5``         EMD 1.0 (py4DSTEM, ``emdfile``) read with
                          ``emdfile``; otherwise this project's layout
                          (dataset ``cbed``, optional ``haadf``, attributes)
``.emd``                  EMD 1.0 as above, else NCEM/Velox EMD through
                          ``rosettasciio``
zarr directory            this project's layout (array ``cbed``), or abTEM 1.x
                          ``to_zarr`` output (parsed from its metadata)
``.hspy``                 HyperSpy through ``rosettasciio`` (``.zspy``: needs
                          zarr < 3 in rosettasciio <= 0.15, refused here)
``.mib``                  Quantum Detectors Merlin through ``rosettasciio``
                          (scan shape from the ``.hdr`` file or ``--scan-shape``)
``.xml`` (+ ``.raw``)     EMPAD through ``rosettasciio``
========================  ===================================================

Axis order: numpy, this project's HDF5/zarr, EMD 1.0 (py4DSTEM's DataCube
Rx, Ry, Qx, Qy) and abTEM store (scan_x, scan_y, kx, ky) already. HyperSpy
formats store arrays in reverse axis order (navigation y, x, then signal y,
x); they are transposed so that scan_x is the fast (HyperSpy ``x``) scan
axis. ``scan_axis="y"`` means the feature is crossed along the other scan
axis: both scan and both detector axes are swapped, so kx stays parallel to
scan_x. Patterns must be in the scan frame (scan rotation corrected).

Nothing but headers is read before the shape, dtype and size are checked;
every problem is a :class:`DataFileError` with one line naming the file, the
bad value and what would be valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .forward import wavelength_A  # noqa: F401 (re-exported)
from .predict import PredictError


class DataFileError(PredictError):
    """A data file that cannot be used, with a one-line reason."""


@dataclass
class Calibration:
    """What a file (or the command line) says about a 4D-STEM scan.

    Attributes
    ----------
    scan_step_A : (2,) array or None
        Probe step along scan_x, scan_y [Å].
    angular_sampling_mrad : (2,) array or None
        Detector pixel size along kx, ky [mrad].
    reciprocal_sampling_invA : (2,) array or None
        Detector pixel size along kx, ky [1/Å] (converted to mrad with the
        beam energy).
    energy_kV : float or None
        Beam energy [kV].
    semiangle_mrad : float or None
        Probe convergence semi-angle [mrad].
    """

    scan_step_A: np.ndarray | None = None
    angular_sampling_mrad: np.ndarray | None = None
    reciprocal_sampling_invA: np.ndarray | None = None
    energy_kV: float | None = None
    semiangle_mrad: float | None = None

    def as_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if v is not None:
                out[k] = np.asarray(v).tolist() if np.ndim(v) else float(v)
        return out


@dataclass
class FourDScan:
    """A 4D-STEM scan (scan_x, scan_y, kx, ky), as read: ``data`` may be a
    memory map, a zarr or a dask array (read with :meth:`load`)."""

    data: object
    calibration: Calibration
    haadf: np.ndarray | None = None
    format: str = ""
    source: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    def load(self, path) -> np.ndarray:
        """The data as float64 in memory; a file that ends early is an error."""
        try:
            data = self.data.compute() if hasattr(self.data, "compute") else self.data
            return np.asarray(data, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - a chunk missing or unreadable
            raise DataFileError(f"{path}: the data cannot be read ({type(exc).__name__}: "
                                f"{_first_line(exc)}); the file may be truncated") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- units ------------------------------------------------------------------------

_UNIT_ALIASES = {"Å": "angstrom", "A": "angstrom", "Angstrom": "angstrom", "µm": "micrometer",
                 "um": "micrometer", "μm": "micrometer", "pixels": "", "px": "", "pixel": ""}


def _pint_units(text: str) -> str:
    """A unit string as files write it ('1/Å', 'A^-1', 'nm', 'mrad') in pint's
    spelling."""
    t = str(text).strip()
    for old, new in (("Å", "angstrom"), ("μ", "micro"), ("µ", "micro")):
        t = t.replace(old, new)
    t = re.sub(r"\bA\b", "angstrom", t)
    t = re.sub(r"\^", "**", t)
    return t


def convert(value: float, units: str | None, kind: str) -> float | None:
    """``value`` in ``units`` as Å (``kind`` 'length'), 1/Å ('reciprocal') or
    mrad ('angle'); None if the units are not of that kind (pixels, empty).
    Unit parsing: pint (a rosettasciio dependency)."""
    if units is None or str(units).strip() in ("", "<undefined>", "pixels", "px", "pixel",
                                               "unknown"):
        return None
    import pint

    ureg = _registry()
    target = {"length": "angstrom", "reciprocal": "1/angstrom", "angle": "milliradian"}[kind]
    try:
        q = ureg.Quantity(float(value), _pint_units(units))
        return float(q.to(target).magnitude)
    except (pint.errors.PintError, AttributeError, ValueError, TypeError):
        return None


_UREG = None


def _registry():
    global _UREG
    if _UREG is None:
        import pint

        _UREG = pint.UnitRegistry()
    return _UREG


def calibration_from_axes(axes: list[dict], energy_kV=None, semiangle_mrad=None
                          ) -> Calibration:
    """Scan step and detector pixel from four axes (scan_x, scan_y, kx, ky)
    given as dicts with ``scale`` and ``units`` (HyperSpy/EMD style)."""
    steps, ang, rec = [], [], []
    for ax in axes[:2]:
        steps.append(convert(ax.get("scale", 1.0), ax.get("units"), "length"))
    for ax in axes[2:4]:
        ang.append(convert(ax.get("scale", 1.0), ax.get("units"), "angle"))
        rec.append(convert(ax.get("scale", 1.0), ax.get("units"), "reciprocal"))

    def pair(v):
        return np.asarray(v, float) if all(x is not None for x in v) else None

    return Calibration(scan_step_A=pair(steps), angular_sampling_mrad=pair(ang),
                       reciprocal_sampling_invA=pair(rec),
                       energy_kV=None if energy_kV is None else float(energy_kV),
                       semiangle_mrad=None if semiangle_mrad is None else float(semiangle_mrad))


# --- the formats --------------------------------------------------------------------

def _from_rsciio(path: Path, signals: list[dict], fmt: str, scan_axis: str) -> FourDScan:
    """The first 4D signal of a rosettasciio reader's output (HyperSpy order)."""
    four = [s for s in signals if np.ndim(s["data"]) == 4 or len(s["data"].shape) == 4]
    if not four:
        shapes = [tuple(s["data"].shape) for s in signals]
        raise DataFileError(f"{path}: holds no 4D signal (shapes {shapes}); expected a 4D-STEM "
                            "scan (2 scan axes, 2 detector axes)")
    s = four[0]
    axes = sorted(s["axes"], key=lambda a: a.get("index_in_array", s["axes"].index(a)))
    data = s["data"]
    # HyperSpy: array order (nav y, nav x, sig y, sig x) -> (x, y, kx, ky)
    order = (1, 0, 3, 2)
    if scan_axis == "y":
        order = (0, 1, 2, 3)
    data = data.transpose(order)
    axes = [axes[i] for i in order]
    md = s.get("metadata") or {}
    tem = ((md.get("Acquisition_instrument") or {}).get("TEM") or {})
    energy = tem.get("beam_energy")  # keV
    alpha = tem.get("convergence_angle")  # mrad
    cal = calibration_from_axes(axes, energy, alpha)
    return FourDScan(data, cal, None, fmt, {"axes": [a.get("name") for a in axes]})


def _read_hyperspy(path: Path, scan_axis: str, **_) -> FourDScan:
    if path.suffix == ".zspy":
        import zarr

        if int(zarr.__version__.split(".")[0]) >= 3:
            raise DataFileError(
                f"{path}: HyperSpy .zspy needs zarr < 3 in rosettasciio <= 0.15 "
                "(hyperspy/rosettasciio#352) and this environment has zarr "
                f"{zarr.__version__} (the zarr v3 hand-over); save it as .hspy "
                "(s.save('scan.hspy')) and give that")
        from rsciio.zspy import file_reader
    else:
        from rsciio.hspy import file_reader
    return _from_rsciio(path, file_reader(str(path), lazy=True), "hyperspy", scan_axis)


def _read_mib(path: Path, scan_axis: str, scan_shape=None, **_) -> FourDScan:
    from rsciio.quantumdetector import file_reader

    # HyperSpy's navigation shape is (x, y): x the fast scan axis
    nav = None if scan_shape is None else (int(scan_shape[0]), int(scan_shape[1]))
    if nav is None and not path.with_suffix(".hdr").exists():
        raise DataFileError(f"{path}: a Merlin file without its .hdr beside it; give the scan "
                            "shape with --scan-shape NX NY (probe positions along x, y)")
    from rsciio.quantumdetector._api import MIBProperties

    prop = MIBProperties()
    prop.parse_file(str(path))
    frame = prop.head_size + int(np.prod(prop.merlin_size)) * np.dtype(prop.dtype).itemsize
    have = prop.file_size // frame
    if prop.file_size % frame or (nav is not None and have < nav[0] * nav[1]):
        want = f"the scan {nav[0]} x {nav[1]} needs {nav[0] * nav[1]}" if nav else \
            "the last one is cut"
        raise DataFileError(f"{path}: truncated: {prop.file_size} bytes hold {have} complete "
                            f"frames of {frame} bytes; {want}")
    return _from_rsciio(path, _quiet(file_reader, str(path), lazy=True,
                                     navigation_shape=nav), "merlin", scan_axis)


def _read_empad(path: Path, scan_axis: str, **_) -> FourDScan:
    from rsciio.empad import file_reader

    raw = None
    try:
        import xml.etree.ElementTree as ET

        node = ET.parse(path).getroot().find("raw_file")
        raw = None if node is None else node.get("filename")
    except Exception as exc:  # noqa: BLE001 - any XML failure
        raise DataFileError(f"{path}: not a readable EMPAD .xml file ({_first_line(exc)})"
                            ) from None
    if raw and not (path.parent / raw).exists():
        raise DataFileError(f"{path}: its raw file {raw} is not beside it")
    if raw:
        side = path.parent / raw
        frame = 128 * 130 * 4
        if side.stat().st_size % frame:
            raise DataFileError(f"{path}: {raw} holds {side.stat().st_size} bytes, not a whole "
                                f"number of EMPAD frames ({frame} bytes); truncated?")
    return _from_rsciio(path, _quiet(file_reader, str(path), lazy=True), "empad", scan_axis)


def _quiet(fn: Callable, *args, **kwargs):
    import logging

    log = logging.getLogger("rsciio")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return fn(*args, **kwargs)
    finally:
        log.setLevel(level)


def _is_emd1(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("emd_group_type") in ("file", b"file") and \
                str(f.attrs.get("version_major")) == "1"
    except OSError:
        return False


def _read_emd1(path: Path, scan_axis: str, **_) -> FourDScan:
    """EMD 1.0 (py4DSTEM / emdfile): the first 4D array node; calibrations
    from its dim vectors (py4DSTEM's DataCube: Rx, Ry in Å or nm, Qx, Qy in
    1/Å or mrad) and from ``calibration``/``microscope`` metadata (beam energy
    ``energy_kV`` or py4DSTEM's ``voltage`` [V], ``semiangle_mrad``); a 2D array named
    ``haadf`` beside it is the HAADF signal."""
    import emdfile

    root = _quiet(emdfile.read, str(path))
    nodes = _emd_nodes(root)
    four = [n for n in nodes if getattr(n, "data", None) is not None and np.ndim(n.data) == 4]
    if not four:
        raise DataFileError(f"{path}: EMD 1.0 file with no 4D array (nodes "
                            f"{[getattr(n, 'name', '?') for n in nodes]}); expected a 4D-STEM "
                            "DataCube")
    a = four[0]
    axes = []
    for i in range(4):
        dim = np.asarray(a.dims[i], float)
        scale = float(dim[1] - dim[0]) if dim.size > 1 else 1.0
        axes.append({"scale": scale, "units": a.dim_units[i], "name": a.dim_names[i]})
    meta = {}
    for n in [a] + nodes:
        for md in getattr(n, "metadata", {}).values():
            meta.update(md._params if hasattr(md, "_params") else dict(md))
    energy = meta.get("energy_kV")
    if energy is None and meta.get("voltage") is not None:
        energy = float(meta["voltage"]) / 1e3
    cal = calibration_from_axes(axes, energy, meta.get("semiangle_mrad",
                                                       meta.get("convergence_semiangle_mrad")))
    if cal.scan_step_A is None and meta.get("R_pixel_size") is not None:
        r = convert(meta["R_pixel_size"], meta.get("R_pixel_units", "A"), "length")
        cal.scan_step_A = None if r is None else np.array([r, r])
    if cal.angular_sampling_mrad is None and cal.reciprocal_sampling_invA is None and \
            meta.get("Q_pixel_size") is not None:
        u = meta.get("Q_pixel_units", "A^-1")
        q = meta["Q_pixel_size"]
        m, r = convert(q, u, "angle"), convert(q, u, "reciprocal")
        cal.angular_sampling_mrad = None if m is None else np.array([m, m])
        cal.reciprocal_sampling_invA = None if r is None else np.array([r, r])
    haadf = next((np.asarray(n.data, np.float64) for n in nodes
                  if getattr(n, "name", "") == "haadf" and np.ndim(n.data) == 2), None)
    data = a.data
    if scan_axis == "y":
        data = np.transpose(data, (1, 0, 3, 2))
        cal = _swap(cal)
        haadf = None if haadf is None else haadf.T
    return FourDScan(data, cal, haadf, "emd1.0", {"node": a.name})


def _emd_nodes(node) -> list:
    """``node`` and everything below it in an emdfile tree (depth first)."""
    out = [node]
    branch = getattr(node, "_branch", None)
    for key in (branch.keys() if branch is not None else []):
        out.extend(_emd_nodes(branch[key]))
    return out


def _read_emd(path: Path, scan_axis: str, **kw) -> FourDScan:
    if _is_emd1(path):
        return _read_emd1(path, scan_axis, **kw)
    from rsciio.emd import file_reader

    return _from_rsciio(path, _quiet(file_reader, str(path), lazy=True), "emd", scan_axis)


def _swap(cal: Calibration) -> Calibration:
    flip = (lambda v: None if v is None else np.asarray(v)[::-1].copy())
    return replace(cal, scan_step_A=flip(cal.scan_step_A),
                   angular_sampling_mrad=flip(cal.angular_sampling_mrad),
                   reciprocal_sampling_invA=flip(cal.reciprocal_sampling_invA))


def _attr_pair(value):
    if value is None:
        return None
    return np.atleast_1d(np.asarray(value, float)).ravel()


def _native_calibration(attrs: dict) -> Calibration:
    return Calibration(
        scan_step_A=_attr_pair(attrs.get("scan_step_A")),
        angular_sampling_mrad=_attr_pair(attrs.get("angular_sampling_mrad")),
        reciprocal_sampling_invA=_attr_pair(attrs.get("reciprocal_sampling_invA")),
        energy_kV=None if attrs.get("energy_kV") is None else float(attrs["energy_kV"]),
        semiangle_mrad=None if attrs.get("semiangle_mrad") is None else float(
            attrs["semiangle_mrad"]))


def _read_h5(path: Path, scan_axis: str, **kw) -> FourDScan:
    if _is_emd1(path):
        return _read_emd1(path, scan_axis, **kw)
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if "cbed" not in f or not isinstance(f["cbed"], h5py.Dataset):
            raise DataFileError(f"{path}: has no dataset 'cbed' (has {sorted(f)}); "
                                "expected cbed with shape (scan_x, scan_y, kx, ky), or an "
                                "EMD 1.0 (py4DSTEM) file")
        d = f["cbed"]
        check_shape(path, d.shape, d.dtype)
        attrs = {k: f.attrs[k] for k in f.attrs}
        attrs.update({k: d.attrs[k] for k in d.attrs})
        try:
            data = d[...]
        except OSError as exc:
            raise DataFileError(f"{path}: dataset cbed cannot be read ({exc}); the file "
                                "may be truncated") from None
        haadf = np.asarray(f["haadf"][...], np.float64) if "haadf" in f else None
    return _oriented(FourDScan(data, _native_calibration(attrs), haadf, "hdf5"), scan_axis)


def _oriented(scan: FourDScan, scan_axis: str) -> FourDScan:
    if scan_axis != "y":
        return scan
    data = np.transpose(scan.data, (1, 0, 3, 2)) if isinstance(scan.data, np.ndarray) else \
        _Transposed(scan.data)
    haadf = None if scan.haadf is None else scan.haadf.T
    return replace(scan, data=data, calibration=_swap(scan.calibration), haadf=haadf)


class _Transposed:
    """A lazy (1, 0, 3, 2) view of an array that numpy cannot transpose in
    place (a zarr array)."""

    def __init__(self, a):
        self.a = a
        s = a.shape
        self.shape, self.dtype = (s[1], s[0], s[3], s[2]), a.dtype

    def __array__(self, dtype=None, copy=None):
        return np.transpose(np.asarray(self.a[...], dtype=dtype), (1, 0, 3, 2))


def _read_zarr(path: Path, scan_axis: str, **kw) -> FourDScan:
    import zarr

    try:
        g = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any zarr failure means "not a group"
        raise DataFileError(f"{path}: not a zarr group ({_first_line(exc)})") from None
    attrs = dict(g.attrs)
    if "metadata0" in attrs:
        return _oriented(_abtem_zarr(path, g, attrs), scan_axis)
    if "cbed" not in g:
        raise DataFileError(f"{path}: zarr group has no array 'cbed' and no abTEM metadata; "
                            "expected cbed with shape (scan_x, scan_y, kx, ky)")
    d = g["cbed"]
    attrs.update(dict(d.attrs))
    haadf = np.asarray(g["haadf"][...], np.float64) if "haadf" in g else None
    return _oriented(FourDScan(d, _native_calibration(attrs), haadf, "zarr"), scan_axis)


def _abtem_zarr(path: Path, g, attrs: dict) -> FourDScan:
    """abTEM 1.x ``to_zarr`` output of a 4D measurement (a scan of diffraction
    patterns): the scan axes' ``sampling`` [Å], the patterns' reciprocal
    sampling [1/Å] and the beam energy [eV] from abTEM's metadata. Parsed by
    hand: the training environment has no abTEM (its from_zarr needs it)."""
    md = attrs["metadata0"]
    axes_md = md.get("axes") or {}
    ordered = [axes_md[k] for k in sorted(axes_md, key=lambda k: int(k.split("_")[1]))]
    a = g["array0"]
    if a.ndim != 4:
        raise DataFileError(f"{path}: abTEM {md.get('type')} with {a.ndim} dims; expected a "
                            "4D scan of diffraction patterns")
    kw = (md.get("kwargs") or {})
    rec = kw.get("sampling")
    rec = rec.get("_value") if isinstance(rec, dict) else rec
    steps = [ax.get("sampling") for ax in ordered[:2]]
    meta = dict(md, **(md.get("metadata") or kw.get("metadata") or {}))
    if rec is None and len(ordered) == 4:
        rec = [ax.get("sampling") for ax in ordered[2:]]
    energy = meta.get("energy")  # eV
    cal = Calibration(
        scan_step_A=np.asarray(steps, float) if all(s is not None for s in steps) else None,
        reciprocal_sampling_invA=None if rec is None else np.asarray(rec, float),
        energy_kV=None if energy is None else float(energy) / 1e3,
        semiangle_mrad=meta.get("semiangle_cutoff"))
    return FourDScan(a, cal, None, "abtem-zarr", {"type": md.get("type")})


def _read_npy(path: Path, scan_axis: str, **_) -> FourDScan:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        try:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _fortran, dtype = read(fh)
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, EOFError, ...
            what = "empty" if size == 0 else "not a valid .npy file"
            raise DataFileError(f"{path}: {what} ({_first_line(exc)}); expected an array "
                                "saved with numpy.save") from None
        offset = fh.tell()
    if dtype.hasobject:
        raise DataFileError(f"{path}: holds Python objects (dtype {dtype}); expected a numeric "
                            "array saved with numpy.save")
    check_shape(path, shape, dtype)
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if size < need:
        raise DataFileError(f"{path}: truncated: the header declares {tuple(shape)} {dtype} "
                            f"({need} bytes with the header), the file has {size} bytes")
    return _oriented(FourDScan(np.load(path, mmap_mode="r"), Calibration(), None, "npy"),
                     scan_axis)


#: (test on the path, reader, name): the first match reads the file
FORMATS: list[tuple[Callable[[Path], bool], Callable[..., FourDScan], str]] = [
    (lambda p: p.suffix == ".npy", _read_npy, "numpy .npy"),
    (lambda p: p.suffix in (".zspy", ".hspy"), _read_hyperspy, "HyperSpy .hspy/.zspy"),
    (lambda p: p.suffix in (".h5", ".hdf5"), _read_h5, "HDF5 (EMD 1.0 or cbed dataset)"),
    (lambda p: p.suffix == ".emd", _read_emd, "EMD (1.0, NCEM, Velox)"),
    (lambda p: p.suffix == ".mib", _read_mib, "Merlin .mib"),
    (lambda p: p.suffix == ".xml", _read_empad, "EMPAD .xml + .raw"),
    (lambda p: p.is_dir(), _read_zarr, "zarr group (cbed array or abTEM)"),
]


def check_shape(path, shape, dtype) -> None:
    """Shape, dtype and size of the declared array, before anything is read."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4:
        raise DataFileError(f"{path}: cbed has shape {shape} ({len(shape)} dims); "
                            "expected 4 dims (scan_x, scan_y, kx, ky)")
    if min(shape) < 1 or shape[0] < 2 or min(shape[2:]) < 4:
        raise DataFileError(f"{path}: cbed shape {shape} is too small; expected >= 2 "
                            "probe positions along x and patterns of >= 4 x 4 pixels")
    dt = np.dtype(dtype)
    if dt.kind not in "uif":
        raise DataFileError(f"{path}: cbed has dtype {dt}; expected intensities as integers "
                            "or floats")
    from .predict import memory_limit_bytes

    need = int(np.prod(shape, dtype=np.float64)) * 8  # read as float64
    limit = memory_limit_bytes()
    if need > limit:
        raise DataFileError(f"{path}: cbed shape {shape} needs {need / 2**30:.1f} GiB in "
                            f"memory, more than this machine allows ({limit / 2**30:.1f} "
                            "GiB); crop the scan to the interface region")


def read_4dstem(path: str | Path, scan_axis: str = "x", scan_shape=None) -> FourDScan:
    """Open a 4D-STEM file of any format in :data:`FORMATS` (headers only:
    the shape, dtype and size are checked, the data is read by
    :meth:`FourDScan.load`)."""
    path = Path(path)
    if scan_axis not in ("x", "y"):
        raise DataFileError(f"scan axis {scan_axis!r} is invalid; valid: x or y (the scan "
                            "axis that crosses the interface)")
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory")
    for test, reader, _name in FORMATS:
        if test(path):
            break
    else:
        names = ", ".join(n for _, _, n in FORMATS)
        raise DataFileError(f"{path}: unknown format {path.suffix!r}; expected one of: {names}")
    try:
        scan = reader(path, scan_axis, scan_shape=scan_shape)
    except DataFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a library's own failure on a bad file
        raise DataFileError(f"{path}: cannot be read as {_name} ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
    check_shape(path, scan.shape, scan.data.dtype)
    if scan.haadf is not None and scan.haadf.shape != scan.shape[:2]:
        raise DataFileError(f"{path}: haadf has shape {scan.haadf.shape}; expected the scan's "
                            f"{scan.shape[:2]} (scan_x, scan_y)")
    return scan


# --- calibration: the file, the flags, the model ------------------------------------

_FLAGS = {"scan_step_A": "--scan-step-A", "angular_sampling_mrad": "--angular-sampling-mrad",
          "energy_kV": "--energy-kV", "semiangle_mrad": "--semiangle-mrad"}


def _pair(value, name: str) -> np.ndarray:
    a = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise DataFileError(f"{name}={value!r} is not a positive number (or pair [x, y])")
    return a


def resolve_calibration(path, found: Calibration, flags: dict, model: dict) -> dict:
    """The calibration predict uses: the file's, completed (not contradicted)
    by the command-line ``flags`` (keys as :data:`_FLAGS`; None = not given),
    and checked against the ``model``'s (energy_kV, semiangle_mrad: the
    geometry the network was trained on; absent for models that predate
    them). Returns scan_step_A, angular_sampling_mrad, energy_kV,
    semiangle_mrad and ``sources`` (where each came from)."""
    have = found.as_dict()
    out, sources = {}, {}
    for key, flag in _FLAGS.items():
        given = flags.get(key)
        inside = have.get(key)
        if given is not None and not (np.all(np.isfinite(np.atleast_1d(given))) and
                                      np.all(np.asarray(given, float) > 0)):
            raise DataFileError(f"{flag}={given} is invalid; valid: a positive number")
        if inside is not None and given is not None:
            a = _pair(inside, key) if key in ("scan_step_A", "angular_sampling_mrad") else \
                np.atleast_1d(float(inside))
            b = _pair(given, flag) if key in ("scan_step_A", "angular_sampling_mrad") else \
                np.atleast_1d(float(given))
            if not np.allclose(a, b, rtol=1e-3):
                raise DataFileError(f"{path}: {flag}={given} does not match the data's "
                                    f"{key}={inside}; drop the flag or correct the file")
        value = inside if inside is not None else given
        if value is not None:
            out[key] = _pair(value, key) if key in ("scan_step_A", "angular_sampling_mrad") \
                else float(value)
            sources[key] = "file" if inside is not None else "flag"
    if "angular_sampling_mrad" not in out and found.reciprocal_sampling_invA is not None:
        energy = out.get("energy_kV") or model.get("energy_kV")
        if energy is None:
            raise DataFileError(
                f"{path}: the detector pixel is {found.reciprocal_sampling_invA.tolist()} 1/Å; "
                "converting it to mrad needs the beam energy: give --energy-kV")
        out["angular_sampling_mrad"] = np.asarray(found.reciprocal_sampling_invA, float) * \
            wavelength_A(energy) * 1e3
        sources["angular_sampling_mrad"] = "file (1/Å at " + (
            "the file's" if "energy_kV" in out else "the model's") + f" {energy:g} kV)"
    for key in ("scan_step_A", "angular_sampling_mrad"):
        if key not in out:
            raise DataFileError(f"{path}: sampling {key} is missing; give it as the attribute "
                                f"{key!r} of the data or with {_FLAGS[key]}")
    for key, what, unit, fix in (
            ("energy_kV", "energy", "kV", "simulate and train a model at the data's energy"),
            ("semiangle_mrad", "probe semi-angle", "mrad",
             "simulate and train a model at the data's convergence angle")):
        want = model.get(key)
        got = out.get(key)
        if want is not None and got is not None and abs(got - want) > 0.02 * want:
            raise DataFileError(f"{path}: {what} {got:g} {unit} but the model was trained at "
                                f"{want:g} {unit}; {fix}")
    out["sources"] = sources
    return out


# --- images (ABF/HAADF campaigns) -----------------------------------------------------

@dataclass
class Image:
    """A 2D image as read: ``data`` (rows = y, columns = x) float64 and the
    pixel size [Å] along (x, y) where the file carries it."""

    data: np.ndarray
    pixel_size_A: np.ndarray | None
    format: str
    title: str = ""


def _image_from_rsciio(path: Path, signals: list[dict], fmt: str, select: str | None
                       ) -> Image:
    images = [s for s in signals if len(s["data"].shape) == 2]
    if select is not None:
        images = [s for s in images if select.lower() in str(
            (s.get("metadata") or {}).get("General", {}).get("title", "")).lower()]
    if not images:
        raise DataFileError(f"{path}: holds no 2D image" + (
            f" titled like {select!r}" if select else "") + f" (shapes "
            f"{[tuple(s['data'].shape) for s in signals]})")
    s = images[0]
    axes = sorted(s["axes"], key=lambda a: a.get("index_in_array", 0))  # (y, x)
    px = [convert(a.get("scale", 1.0), a.get("units"), "length") for a in axes[::-1]]
    title = str((s.get("metadata") or {}).get("General", {}).get("title", ""))
    return Image(np.asarray(s["data"], np.float64),
                 np.asarray(px, float) if all(p is not None for p in px) else None, fmt, title)


def _imagej_units(path: Path, signals: list[dict]) -> None:
    """rosettasciio 0.15 reads an ImageJ TIFF's pixel scale but not its
    ``unit`` (tifffile writes both): take the unit from tifffile's ImageJ
    metadata where the axes have none ('micron' is ImageJ's spelling of µm)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        unit = (tif.imagej_metadata or {}).get("unit")
    if not unit:
        return
    unit = {"micron": "µm", "\\u00B5m": "µm"}.get(unit, unit)
    for s in signals:
        for ax in s["axes"]:
            if not ax.get("units") and not ax.get("navigate"):
                ax["units"] = unit


def read_image(path: str | Path, select: str | None = None) -> Image:
    """A 2D STEM image with its pixel size: TIFF (rosettasciio's TIFF reader on
    ``tifffile``: ImageJ, FEI/TFS, Zeiss, DM-exported calibrations), DM3/DM4
    and Velox/NCEM EMD and HyperSpy ``.hspy`` (rosettasciio), ``.npy`` (no
    pixel size: give it). ``select``: part of the image title to pick one of
    several images in a file (e.g. "HAADF" in a Velox file)."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            data = np.load(path)
            if data.ndim != 2:
                raise DataFileError(f"{path}: shape {data.shape}; expected a 2D image")
            return Image(np.asarray(data, np.float64), None, "npy")
        if suffix in (".tif", ".tiff"):
            from rsciio.tiff import file_reader
            fmt = "tiff"
        elif suffix in (".dm3", ".dm4"):
            from rsciio.digitalmicrograph import file_reader
            fmt = "digitalmicrograph"
        elif suffix == ".emd":
            from rsciio.emd import file_reader
            fmt = "emd"
        elif suffix == ".hspy":
            from rsciio.hspy import file_reader
            fmt = "hyperspy"
        else:
            raise DataFileError(f"{path}: unknown image format {path.suffix!r}; expected .tif, "
                                ".dm3, .dm4, .emd (Velox/NCEM), .hspy or .npy")
        signals = _quiet(file_reader, str(path))
        if fmt == "tiff":
            _imagej_units(path, signals)
        return _image_from_rsciio(path, signals, fmt, select)
    except DataFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a library's own failure on a bad file
        raise DataFileError(f"{path}: cannot be read as an image ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
