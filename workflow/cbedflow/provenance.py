"""Provenance helpers shared by the stages."""

from __future__ import annotations

import importlib.metadata as md


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (those not installed are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out
