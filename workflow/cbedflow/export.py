"""Export a labelled zarr group (a collected dataset, a prediction) to the
files py4DSTEM and HyperSpy users open with one call.

``python -m cbedflow export --input results/dataset.zarr --out dataset.h5``

- ``.h5``/``.emd``: EMD 1.0 written with ``emdfile`` (py4DSTEM's file
  library: ``py4DSTEM.read(path)`` / ``emdfile.read(path)``). Every array
  becomes an EMD Array named as in the group, with its dimension names, its
  dimension vectors and units where the group's attributes calibrate them
  (scan_x/scan_y: ``scan_step_A`` [Å]; kx/ky: ``angular_sampling_mrad``
  [mrad]) and its ``units``; the group's attributes are kept as JSON in the
  root metadata ``cbedflow``.
- ``.hspy``: one HyperSpy signal written with ``rosettasciio``
  (``hs.load(path)``): the group's signal (the array with the group's
  ``dims``, else the largest) with named, calibrated axes
  (navigation: every dimension but the detector plane kx, ky or the last
  one), the other arrays and the attributes in ``original_metadata``. Written
  chunk by chunk through dask; the EMD writer holds each array in memory and
  refuses one larger than the memory limit. (``.zspy`` would need zarr < 3
  in rosettasciio <= 0.15, hyperspy/rosettasciio#352.)

The exported data are the group's values unchanged (no transposition: array
axes keep this project's order, named so).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .storage import atomic_file



class ExportError(ValueError):
    """An export that cannot be done, with a one-line reason."""


def _calibrations(attrs: dict) -> dict:
    """Dimension name -> (step, unit) from the group's attributes."""
    out = {}
    step = attrs.get("scan_step_A")
    if step is not None:
        s = np.atleast_1d(np.asarray(step, float))
        out["scan_x"] = (float(s[0]), "Å")
        out["scan_y"] = (float(s[-1]), "Å")
    ang = attrs.get("angular_sampling_mrad")
    if ang is not None:
        a = np.atleast_1d(np.asarray(ang, float))
        out["kx"] = (float(a[0]), "mrad")
        out["ky"] = (float(a[-1]), "mrad")
    return out


def _arrays(group) -> dict:
    return {name: group[name] for name in sorted(group.array_keys())}


def _dims(arr) -> list[str]:
    names = getattr(arr.metadata, "dimension_names", None)
    return list(names) if names else [f"dim_{i}" for i in range(arr.ndim)]


def _main_array(arrays: dict, attrs: dict) -> str:
    """The signal: the array whose dimensions are the group's ``dims``
    attribute (collect writes the campaign's signal dims there), else the
    array with the most dimensions and elements."""
    dims = attrs.get("dims")
    for name, arr in arrays.items():
        if dims and _dims(arr) == list(dims):
            return name
    return max(arrays, key=lambda n: (arrays[n].ndim, np.prod(arrays[n].shape)))


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: np.asarray(o).tolist()))


def export(src: str | Path, out: str | Path) -> Path:
    """Write the zarr group ``src`` as ``out`` (format from its suffix:
    .h5/.emd EMD 1.0, .hspy HyperSpy); atomic (nothing at ``out`` on failure)."""
    import zarr

    src, out = Path(src), Path(out)
    if out.suffix not in (".h5", ".emd", ".hspy"):
        raise ExportError(f"{out}: unknown export format {out.suffix!r}; valid: .h5 or .emd "
                          "(EMD 1.0, py4DSTEM), .hspy (HyperSpy)")
    try:
        group = zarr.open_group(str(src), mode="r")
    except Exception as exc:  # noqa: BLE001 - any zarr failure means "not a group"
        raise ExportError(f"{src}: not a zarr group ({exc})") from None
    arrays = _arrays(group)
    if not arrays:
        raise ExportError(f"{src}: holds no arrays to export")
    attrs = _jsonable(dict(group.attrs))
    with atomic_file(out) as tmp:
        if out.suffix == ".hspy":
            _write_hspy(tmp, src, arrays, attrs)
        else:
            _write_emd(tmp, src, arrays, attrs)
    return out


def _write_emd(path: Path, src: Path, arrays: dict, attrs: dict) -> None:
    import emdfile

    from .predict import memory_limit_bytes

    cal = _calibrations(attrs)
    root = emdfile.Root(name=src.stem or "cbedflow")
    for name, arr in arrays.items():
        need = int(np.prod(arr.shape)) * arr.dtype.itemsize
        if need > memory_limit_bytes():
            raise ExportError(f"{src}/{name}: {need / 2**30:.1f} GiB does not fit in memory for "
                              "the EMD writer; export to .hspy (written chunk by chunk)")
        dims = _dims(arr)
        root.tree(emdfile.Array(
            data=np.asarray(arr[...]), name=name, units=str(arr.attrs.get("units", "")),
            dims=[cal[d][0] if d in cal else None for d in dims],
            dim_names=dims,
            dim_units=[cal[d][1] if d in cal else "pixels" for d in dims]))
    root.metadata = emdfile.Metadata(name="cbedflow", data={
        "attrs_json": json.dumps(attrs), "source": str(src)})
    emdfile.save(str(path), root, mode="o")


def _write_hspy(path: Path, src: Path, arrays: dict, attrs: dict) -> None:
    import dask.array as da
    from rsciio.hspy import file_writer

    main = _main_array(arrays, attrs)
    arr = arrays[main]
    dims = _dims(arr)
    cal = _calibrations(attrs)
    n_sig = 2 if dims[-2:] == ["kx", "ky"] else 1
    axes = []
    for i, (d, n) in enumerate(zip(dims, arr.shape)):
        step, unit = cal.get(d, (1.0, ""))
        axes.append({"name": d, "size": int(n), "scale": step, "units": unit,
                     "offset": -(n // 2) * step if d in ("kx", "ky") else 0.0,
                     "navigate": i < arr.ndim - n_sig, "index_in_array": i})
    others = {}
    for name, a in arrays.items():
        if name != main and np.prod(a.shape) <= 1_000_000:
            others[name] = {"dims": _dims(a), "units": str(a.attrs.get("units", "")),
                            "values": np.asarray(a[...]).tolist()}
    signal = {
        "data": da.from_array(arr, chunks=arr.chunks),
        "axes": axes,
        "metadata": {"General": {"title": f"{src.stem}: {main}"},
                     "Signal": {"signal_type": "electron_diffraction" if n_sig == 2 else "",
                                "quantity": str(arr.attrs.get("long_name", main)) +
                                (f" ({arr.attrs['units']})" if arr.attrs.get("units") else "")}},
        "original_metadata": {"cbedflow": {"source": str(src), "array": main,
                                           "attrs_json": json.dumps(attrs),
                                           "arrays": others}},
        "tmp_parameters": {}, "attributes": {"_lazy": True}, "learning_results": {},
        "models": {}, "package_info": {"name": "cbedflow", "version": _version()},
    }
    file_writer(str(path), signal, show_progressbar=False)


def _version() -> str:
    from . import __version__

    return str(__version__)
