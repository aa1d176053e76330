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

import zarr


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


def write_attrs(group: zarr.Group, attrs: dict) -> None:
    """Write JSON attributes to ``group``."""
    group.attrs.update(attrs)


def open_complete(path: str | Path, array: str = "cbed") -> zarr.Group:
    """Open a group written by :func:`atomic_group` and check it is complete.

    Raises :class:`CorruptOutputError` naming ``path`` if the group cannot be
    opened, lacks the ``complete`` mark or the ``array``, or if any chunk of
    ``array`` is missing on disk.
    """
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises several types for broken stores
        raise CorruptOutputError(f"{path}: not a readable zarr v3 group ({exc})") from exc
    if not group.attrs.get("complete", False):
        raise CorruptOutputError(f"{path}: group is not marked complete (partial write?)")
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
