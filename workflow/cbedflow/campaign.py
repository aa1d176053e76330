"""The campaign's work units, derived from a validated config.

Snakemake's input functions (``workflow/rules/common.smk``) and the command
line both use this module, so the DAG and the code agree on names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .structures import (
    InterfaceGeometry,
    StructureSpec,
    campaign_structures,
    series_compatible,
)

#: Thickness label of a unit that records every thickness at exit planes.
SERIES = "series"


def thickness_label(thickness_A: float) -> str:
    """Wildcard label of a nominal thickness [Å], e.g. 39.0 -> '39'."""
    return f"{thickness_A:g}".replace(".", "p")


@dataclass
class Campaign:
    """Structures, thicknesses and phonon batches of one config."""

    config: dict

    @cached_property
    def structures(self) -> list[StructureSpec]:
        s = self.config["structures"]
        return campaign_structures(s["per_class"], tuple(s["intermix_fraction"]),
                                   self.config["seed"], tuple(s["step_classes"]))

    @cached_property
    def by_name(self) -> dict[str, tuple[int, StructureSpec]]:
        return {spec.name: (i, spec) for i, spec in enumerate(self.structures)}

    @property
    def geometry(self) -> InterfaceGeometry:
        s = self.config["structures"]
        n_x = s["n_substrate"] + s["n_film"] + 1
        return InterfaceGeometry(s["n_substrate"], s["n_film"], s["y_repeats"] or n_x)

    @property
    def thicknesses(self) -> dict[str, float]:
        return {thickness_label(t): float(t) for t in self.config["structures"]["thicknesses_A"]}

    @property
    def n_batches(self) -> int:
        ph = self.config["simulation"]["phonons"]
        return ph["configs"] // ph["batch_size"]

    @property
    def batch_size(self) -> int:
        return self.config["simulation"]["phonons"]["batch_size"]

    @property
    def output_dir(self) -> str:
        return self.config["output_dir"]

    def structure_path(self, name: str) -> str:
        """Structure file of ``name`` (all thicknesses)."""
        return f"{self.output_dir}/structures/{name}.extxyz"

    def unit_path(self, name: str, thickness: str, batch: int) -> str:
        """zarr group of one simulation unit."""
        return f"{self.output_dir}/simulations/{name}/t{thickness}/b{batch}.zarr"

    def unit_paths(self) -> list[str]:
        return [self.unit_path(*u) for u in self.units()]

    @property
    def dataset_path(self) -> str:
        return f"{self.output_dir}/dataset.zarr"

    def in_series(self, spec: StructureSpec) -> bool:
        """True if ``spec``'s thicknesses come from one propagation with exit
        planes (``simulation.exit_planes``, several thicknesses, and a
        structure whose thinner samples are cuts of the thickest)."""
        return (self.config["simulation"]["exit_planes"] and len(self.thicknesses) > 1
                and series_compatible(spec))

    def units(self) -> list[tuple[str, str, int]]:
        """Every (structure, thickness label, batch) work unit; the thickness
        label is :data:`SERIES` for a unit that records every thickness."""
        out = []
        for spec in self.structures:
            labels = [SERIES] if self.in_series(spec) else list(self.thicknesses)
            out += [(spec.name, t, b) for t in labels for b in range(self.n_batches)]
        return out
