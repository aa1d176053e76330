"""Detector files written from their published layouts, for the reader
tests: no library writes them (rosettasciio only reads Merlin and EMPAD).

- Merlin ``.mib`` (Quantum Detectors, "MQ1" frames): per frame a 384-byte
  ASCII header (comma-separated: "MQ1", sequence number, header size 00384,
  chips, width, height, pixel depth U08/U16/U32, sensor layout, ..., the
  extended fields with the timestamp and the exposure in ns near its end),
  then the frame as big-endian unsigned integers; frames in scan order, the
  fast (x) axis first.
- EMPAD ``.xml`` + ``.raw``: little-endian float32 frames of 128 x 130
  pixels (128 x 128 data, 2 rows of metadata), scan order fast axis first;
  the XML names the raw file and the scan size (``pix_x``, ``pix_y``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mib(path: Path, cbed: np.ndarray, dtype: str = ">u2") -> None:
    """``cbed`` (scan_x, scan_y, kx, ky) of counts as a single-chip Merlin
    file: frames in scan order with x fast, each stored (ky rows, kx columns)."""
    nx, ny, w, h = cbed.shape
    depth = {">u1": "U08", ">u2": "U16", ">u4": "U32"}[dtype]
    with open(path, "wb") as fh:
        i = 0
        for iy in range(ny):
            for ix in range(nx):
                i += 1
                fields = ["MQ1", f"{i:06d}", "00384", "01", f"{w:04d}", f"{h:04d}", depth,
                          "   1x1", "01", "2026-11-23 10:00:00.000000", "0.001000", "0", "0",
                          "0", "1.200000E+2", "5.110000E+2", "0.000000E+0", "0.000000E+0",
                          "0.000000E+0", "0.000000E+0", "0.000000E+0", "0.000000E+0", "3RX",
                          f"2026-11-23T10:00:00.{i:09d}Z", "1000000ns", "12", ""]
                head = ",".join(fields).encode()
                fh.write(head + b"\0" * (384 - len(head)))
                # Merlin stores the rows bottom-up (rosettasciio flips them back)
                fh.write(np.ascontiguousarray(cbed[ix, iy].T[::-1]).astype(dtype).tobytes())


def write_empad(xml: Path, cbed: np.ndarray, scan_step_A: float,
                pixel_invA: float | None = None) -> Path:
    """``cbed`` (scan_x, scan_y, kx, ky) with kx, ky <= 128 as an EMPAD scan:
    each pattern centred in a 128 x 128 frame (zero angle at pixel 64, as
    abTEM's n // 2), the raw file beside ``xml``; the scan's field of view
    from ``scan_step_A`` and the detector pixel [1/Å] in the XML."""
    nx, ny, w, h = cbed.shape
    raw = xml.with_name(f"scan_x{nx}_y{ny}.raw")
    frames = np.zeros((ny, nx, 130, 128), "<f4")
    x0, y0 = 64 - w // 2, 64 - h // 2
    frames[:, :, y0:y0 + h, x0:x0 + w] = np.transpose(cbed, (1, 0, 3, 2))
    frames.tofile(raw)
    fov_m = float(scan_step_A * 1e-10 * max(nx, ny) * 0.72)
    cal = "" if pixel_invA is None else (
        f"<calibrated_pixelsize>{float(pixel_invA) * 10 / 1e9!r}</calibrated_pixelsize>")
    # no whitespace between elements: rosettasciio's XML parser keeps it as text
    xml.write_text(
        f'<root><raw_file filename="{raw.name}" /><pix_x>{nx}</pix_x><pix_y>{ny}</pix_y>'
        "<iom_measurements><full_scan_field_of_view>"
        f"<x>{fov_m!r}</x><y>{fov_m!r}</y><scale_factor>0.72</scale_factor>"
        f"</full_scan_field_of_view>{cal}</iom_measurements></root>")
    return raw


# --- Gatan DigitalMicrograph 4 (.dm4) ---------------------------------------------------
# The published tag-file layout (DM4): a big-endian header (version 4, root size as
# uint64, byte order flag 1 = little-endian data), then the root tag group. A group:
# sorted (u1), open (u1), [size (u8), except the root], number of tags (u8). A tag:
# type (u1: 20 group, 21 data), name length (>i2), name, then a group, or for data:
# size (u8), "%%%%", the info array length (u8) and the info array (u8 each: [type]
# for a simple value, [20, element type, length] for an array), then the value,
# little-endian; 8 zero bytes end the file.

_DM_SIMPLE = {"l": (3, "<i4"), "f": (6, "<f4"), "d": (7, "<f8")}


def _dm_group(tags: list[tuple[str, bytes]], root: bool = False) -> bytes:
    body = b"".join(tags_ for _, tags_ in tags)
    head = bytes([0, 1])
    if not root:
        head += (len(body) + 8).to_bytes(8, "big")
    return head + len(tags).to_bytes(8, "big") + body


def _dm_tag(name: str, payload: bytes, group: bool) -> tuple[str, bytes]:
    n = name.encode()
    size = b"" if group else len(payload).to_bytes(8, "big")  # a group holds its own
    return name, bytes([20 if group else 21]) + len(n).to_bytes(2, "big") + n + size + payload


def _dm_data(value, kind: str) -> bytes:
    if kind == "units":  # a string: an array of UTF-16 code units (ushort)
        codes = np.array([ord(c) for c in value], "<u2")
        info = [20, 4, len(codes)]
        raw = codes.tobytes()
    elif kind == "array":
        info = [20, 6, value.size]
        raw = np.ascontiguousarray(value, "<f4").tobytes()
    else:
        code, dt = _DM_SIMPLE[kind]
        info = [code]
        raw = np.array(value, dt).tobytes()
    return b"%%%%" + len(info).to_bytes(8, "big") + b"".join(
        int(i).to_bytes(8, "big") for i in info) + raw


def write_dm4(path: Path, image: np.ndarray, pixel_size: float, units: str = "nm",
              name: str = "HAADF") -> None:
    """``image`` (rows = y, columns = x) float32 as a one-image DM4 file with
    the pixel size ``pixel_size`` [``units``] on both axes."""
    h, w = image.shape

    def data(n, v, kind):
        return _dm_tag(n, _dm_data(v, kind), False)

    def group(n, tags):
        return _dm_tag(n, _dm_group(tags), True)

    dim = [group("", [data("Origin", 0.0, "f"), data("Scale", pixel_size, "f"),
                      data("Units", units, "units")]) for _ in range(2)]
    image_data = group("ImageData", [
        group("Calibrations", [
            group("Brightness", [data("Origin", 0.0, "f"), data("Scale", 1.0, "f"),
                                 data("Units", "counts", "units")]),
            group("Dimension", dim)]),
        data("Data", image.ravel(), "array"),
        data("DataType", 2, "l"),
        group("Dimensions", [data("", w, "l"), data("", h, "l")]),
        data("PixelDepth", 4, "l")])
    img = group("", [image_data, group("ImageTags", []), data("Name", name, "units")])
    root = _dm_group([group("ImageList", [img])], root=True)
    with open(path, "wb") as fh:
        fh.write((4).to_bytes(4, "big") + (len(root) + 8).to_bytes(8, "big") +
                 (1).to_bytes(4, "big") + root + bytes(8))


# --- Thermo Fisher Velox EMD (.emd) ------------------------------------------------------
# HDF5: a dataset "Version" holding JSON {"format": "Velox", "version": 11} as bytes; each
# image in Data/Image/<id>/ as "Data" (y, x, frames) and "Metadata" (the UTF-8 bytes of a
# JSON document as a uint8 column, zero-padded): BinaryResult.PixelSize {width, height}
# with PixelUnitX/Y, Detectors.Detector-<n>.DetectorName, BinaryResult.DetectorIndex.

def write_velox(path: Path, images: dict[str, np.ndarray], pixel_size_m: float) -> None:
    """``images`` (detector name -> (rows y, columns x) array) as a Velox EMD
    file, one image group each, pixels ``pixel_size_m`` [m] square."""
    import json
    import uuid

    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array(
            [json.dumps({"format": "Velox", "version": 11}).encode()]))
        for i, (name, image) in enumerate(images.items()):
            g = f.create_group(f"Data/Image/{uuid.uuid4().hex}")
            g.create_dataset("Data", data=np.asarray(image, "<f4")[:, :, None])
            meta = {"BinaryResult": {"PixelSize": {"width": repr(pixel_size_m),
                                                   "height": repr(pixel_size_m)},
                                     "PixelUnitX": "m", "PixelUnitY": "m",
                                     "Offset": {"x": "0", "y": "0"}, "DetectorIndex": str(i)},
                    "Detectors": {f"Detector-{j}": {"DetectorName": n}
                                  for j, n in enumerate(images)},
                    "Acquisition": {}, "Scan": {}, "CustomProperties": {}}
            raw = np.frombuffer(json.dumps(meta).encode(), np.uint8)
            g.create_dataset("Metadata", data=np.pad(raw, (0, 64))[:, None])
