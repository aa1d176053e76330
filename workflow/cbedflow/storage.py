"""zarr v3 storage helpers: atomic group writes and integrity checks.

The hand-over between the simulation environment (zarr >= 3.1) and the
training environment (zarr 3.0.x) is a zarr v3 directory store, so only
plain numeric arrays and JSON attributes are used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import zarr

#: Target size of one chunk of a stack of small items (examples) [bytes]:
#: one example per chunk made the first training epoch read at 0.11-0.14x the
#: in-memory rate (per-chunk overhead), docs/performance.md.
CHUNK_BYTES = 2**20


class CorruptOutputError(ValueError):
    """A stored group that is incomplete, truncated or holds bad values."""


@contextlib.contextmanager
def atomic_group(path: str | Path) -> Iterator[zarr.Group]:
    """Create a zarr v3 group at a temporary sibling path, rename it on success.

    On an exception the temporary group is removed and ``path`` is untouched,
    so a later stage never sees a partial group (see :func:`atomic_dir`).
    """
    with atomic_dir(path) as tmp:
        yield zarr.open_group(str(tmp), mode="w", zarr_format=3)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write ``path`` to; rename it to ``path``
    on success, remove it on an exception. The temporary name ends with
    ``path``'s name, so writers that check suffixes (Keras, numpy) accept it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.{path.name}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temp file, then rename)."""
    import json

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent))


def digest(data) -> str:
    """sha256 of ``data`` (bytes, str or a numpy array, C order), 16 hex digits:
    the one short hash of the package (unit checksums, config and resume keys)."""
    import hashlib

    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    elif isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def write_attrs(group: zarr.Group, attrs: dict) -> None:
    """Write JSON attributes to ``group``."""
    group.attrs.update(attrs)


def open_complete(path: str | Path, array: str | None = None) -> zarr.Group:
    """Open a group written by :func:`atomic_group` and check it is complete.

    Raises :class:`CorruptOutputError` naming ``path`` if the group cannot be
    opened, lacks the ``complete`` mark or the ``array`` (if given), or if
    any chunk of ``array`` is missing on disk.
    """
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises several types for broken stores
        raise CorruptOutputError(f"{path}: not a readable zarr v3 group ({exc})") from exc
    if not group.attrs.get("complete", False):
        raise CorruptOutputError(f"{path}: group is not marked complete (partial write?)")
    if array is None:
        return group
    if array not in group:
        raise CorruptOutputError(f"{path}: array {array!r} is missing")
    arr = group[array]
    expected = 1
    for n, c in zip(arr.shape, arr.chunks):
        expected *= -(-n // c)
    stored = arr.nchunks_initialized
    if stored != expected:
        raise CorruptOutputError(
            f"{path}: array {array!r} has {stored} of {expected} chunks on disk (truncated)"
        )
    return group


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; it replaces ``path`` on
    success and is removed on an exception (``path`` untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def stack_chunk_length(item_shape: tuple, itemsize: int = 4,
                       target_bytes: int = CHUNK_BYTES) -> int:
    """Items per chunk along the leading (stacking) axis: as many as fit
    ``target_bytes``, at least one."""
    per_item = itemsize * int(np.prod(item_shape, dtype=np.int64))
    return max(1, target_bytes // max(1, per_item))


class StackWriter:
    """Sequential writer of items into the leading axis of a chunked array.

    Items are buffered and written one whole chunk at a time (a write of a
    single item into a multi-item chunk would read, decompress and rewrite
    the chunk every time). Hand-written: zarr has no appending buffered
    writer. Items must come in order 0, 1, 2, ...; :meth:`close` writes the
    last partial chunk and checks that every item was written.
    """

    def __init__(self, array: zarr.Array):
        self.array = array
        self.chunk = array.chunks[0]
        self.buf = np.zeros((self.chunk,) + tuple(array.shape[1:]), dtype=array.dtype)
        self.start = 0  # first item of the buffered chunk
        self.next = 0

    def __setitem__(self, j: int, value) -> None:
        if j != self.next:
            raise IndexError(f"StackWriter: item {j} written out of order (next is {self.next})")
        self.buf[j - self.start] = value
        self.next += 1
        if self.next - self.start == self.chunk:
            self._flush()

    def _flush(self) -> None:
        n = self.next - self.start
        if n:
            self.array[self.start:self.next] = self.buf[:n]
        self.start = self.next

    def close(self) -> None:
        self._flush()
        if self.next != self.array.shape[0]:
            raise ValueError(f"StackWriter: {self.next} of {self.array.shape[0]} items written")


class ChunkReader:
    """Read items of a chunked array one at a time in (mostly) increasing
    order, decoding each stored chunk once: the last chunk read is kept.
    Hand-written: zarr decodes a whole chunk for every single-item read."""

    def __init__(self, array: zarr.Array):
        self.array = array
        self.chunk = array.chunks[0]
        self._start = None
        self._block = None

    def __getitem__(self, i: int) -> np.ndarray:
        start = (int(i) // self.chunk) * self.chunk
        if start != self._start:
            self._block = self.array[start:start + self.chunk]
            self._start = start
        return self._block[int(i) - start]
