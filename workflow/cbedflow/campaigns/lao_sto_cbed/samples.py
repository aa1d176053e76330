"""Samples and units of the LAO/STO campaign: structure files (cached) and
the (structure, thickness, phonon batch) work units.

A structure is built once at every thickness (ase, one extxyz frame each,
labels in ``info``) by the first job that needs it; a unit simulates one
thickness, or the whole thickness series at exit planes, of one batch of
frozen-phonon configurations.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ...forward.perturb import strip_disabled
from .structures import build_series, build_structure, without_default_step_model

#: Thickness label of a unit that records every thickness at exit planes.
SERIES = "series"

#: config sections whose every key shapes every unit
UNIT_SECTIONS = ("seed", "device", "microscope", "simulation")

#: keys of ``structures`` that shape every structure (the rest choose which
#: structures exist and with which parameters: per_class, step_classes,
#: thicknesses_A, intermix_fraction; a structure's own spec enters its key)
GEOMETRY_KEYS = ("n_substrate", "n_film", "y_repeats")


def thickness_label(thickness_A: float) -> str:
    """Wildcard label of a nominal thickness [Å], e.g. 39.0 -> '39'."""
    return f"{thickness_A:g}".replace(".", "p")


def part_label(thickness: str) -> str:
    """Unit path component of a thickness label ('39' -> 't39')."""
    return f"t{thickness}"


def thickness_of_part(part: str) -> str:
    """Thickness label of a unit path component ('t39' -> '39')."""
    if not part.startswith("t"):
        raise ValueError(f"unit part {part!r} is not t<thickness label> or t{SERIES}")
    return part[1:]


def read_frames(path: str | Path) -> list:
    """Every frame of the structure file ``path``, thinnest first."""
    import ase.io

    frames = ase.io.read(path, index=":", format="extxyz", parallel=False)
    return sorted(frames, key=lambda f: f.info["thickness_A"])


def read_frame(path: str | Path, label: str):
    """The frame of ``path`` whose nominal thickness has ``label``."""
    frames = read_frames(path)
    for atoms in frames:
        if thickness_label(atoms.info["nominal_thickness_A"]) == label:
            return atoms
    have = [thickness_label(a.info["nominal_thickness_A"]) for a in frames]
    raise ValueError(f"{path}: no frame for thickness {label!r}; has {have}")


def structure_key(camp, name: str) -> str:
    """Hash of everything a structure file holds: its spec, the geometry and
    the thicknesses."""
    from ...config import config_hash

    _, spec = camp.by_name[name]
    s = camp.config["structures"]
    return config_hash({"spec": asdict(spec),
                        "geometry": without_default_step_model(asdict(camp.geometry)),
                        "decay": s["intermix_decay"], "thicknesses": sorted(camp.thicknesses),
                        "series": camp.in_series(spec)})


def ensure_structure(camp, name: str, path: Path | None = None, force: bool = False) -> Path:
    """The structure file of ``name`` (all thicknesses, labels in each frame's
    info), built and saved atomically if missing, if built from other settings
    (its ``structure_key`` differs) or if ``force``."""
    import ase.io

    from ...storage import atomic_file

    path = Path(camp.structure_path(name)) if path is None else path
    key = structure_key(camp, name)
    if not force and path.exists():
        try:
            first = ase.io.read(path, index=0, format="extxyz", parallel=False)
            force = first.info.get("structure_key") != key
        except Exception:  # unreadable: rebuild
            force = True
    if force or not path.exists():
        _, spec = camp.by_name[name]
        decay = camp.config["structures"]["intermix_decay"]
        if camp.in_series(spec):  # thinner samples are cuts of the thickest
            frames = build_series(spec, camp.geometry, list(camp.thicknesses.values()), decay)
        else:
            frames = [build_structure(spec, camp.geometry, t, decay)
                      for t in camp.thicknesses.values()]
        for f in frames:
            f.info["structure_key"] = key
        with atomic_file(path) as tmp:
            # parallel=False: under MPI, ASE would otherwise let only world rank 0 write
            ase.io.write(tmp, frames, format="extxyz", parallel=False)
    return path


def unit_key(config: dict, structure: str | None = None, thickness: str | None = None) -> str:
    """Hash of the settings a unit is computed with: the sections that shape
    every unit, the structure geometry, the unit's own structure spec (kind,
    step class or intermixing fraction, seed; the intermixing decay for
    diffuse ones) and thickness (all thicknesses for a series unit). Adding
    structures or thicknesses (except to a series unit), or changing a
    parameter that only other structures use, leaves a unit's key unchanged,
    so it is not recomputed."""
    from ...config import config_hash

    part = {k: config[k] for k in UNIT_SECTIONS if k in config}
    # exit_planes chooses which units exist (series or per thickness), which
    # the unit's thickness label says; it does not change a unit's physics
    # perturbations switched off (or absent) change nothing, so they do not
    # enter the key: a unit simulated before they existed is reused
    part["simulation"] = {k: v for k, v in hashed_simulation(part.get("simulation", {})).items()
                          if k != "exit_planes"}
    s = config["structures"]
    # the paper's step model (the default) does not enter the key: a unit
    # simulated before structures.step_model existed is reused
    part["geometry"] = without_default_step_model(
        {k: s[k] for k in GEOMETRY_KEYS + ("step_model",) if k in s})
    if thickness == SERIES:
        part["series_A"] = sorted(config["structures"]["thicknesses_A"])
    if structure is not None:
        from . import LaoStoCbed

        _, spec = LaoStoCbed(config).by_name[structure]
        part["structure"] = asdict(spec)
        if spec.kind == "diffuse":
            part["geometry"]["intermix_decay"] = config["structures"]["intermix_decay"]
    part["unit"] = [structure, thickness]
    return config_hash(part)


def simulate_from_file(params: dict, structure: str | Path, thickness: str, batch: int,
                       out: str | Path, progress: Callable[[str], None] = print) -> None:
    """Simulate one unit of the structure file ``structure``: thickness label
    ``thickness`` (or :data:`SERIES`), phonon batch ``batch``."""
    from ...config import config_hash
    from ...forward.cbed4d import SimulationSettings, simulate_unit, unit_seeds
    from ...forward.perturb import (
        PerturbationError,
        change_thickness,
        draw_perturbation,
        perturbation_config,
        unit_perturbation,
    )

    settings = SimulationSettings.from_config(params)
    series = None
    if thickness == SERIES:  # every thickness from one propagation (exit planes)
        *series, atoms = read_frames(structure)
    else:
        atoms = read_frame(structure, thickness)
    bs = params["simulation"]["phonons"]["batch_size"]
    seeds = unit_seeds(params["seed"], atoms.info["structure"],
                       int(atoms.info["thickness_cells"]), batch, bs)
    perturbation = None
    pcfg = perturbation_config(params)
    if pcfg is not None:  # one draw per structure, whatever the unit
        p = draw_perturbation(params["seed"], atoms.info["structure"], pcfg)
        a = float(atoms.info["unit_cell_A"])
        if series and pcfg["thickness_fraction"] > 0:
            raise PerturbationError(
                f"simulation.perturbations.thickness_fraction={pcfg['thickness_fraction']} "
                "cannot apply to a thickness series from exit planes (its thinner samples "
                "must be cuts of the thickest); valid: simulation.exit_planes: false")
        dc = p.thickness_cells(int(atoms.info["thickness_cells"]))
        atoms = change_thickness(atoms, dc)  # labels (info) keep the nominal thickness
        for f in list(series or []) + [atoms]:
            f.info.update(p.labels(int(f.info["thickness_cells"]), a))
        if p.applied:  # a structure left ideal (fraction < 1) runs the ideal code path
            perturbation = unit_perturbation(p, params["simulation"]["phonons"]["configs"],
                                             batch, bs)
    exits = (" with exit planes at " + ", ".join(f"{f.info['thickness_A']:.2f}" for f in series)
             + " Å") if series else ""
    progress(f"simulate {atoms.info['structure']} t={atoms.info['thickness_A']:.2f} Å{exits} "
             f"batch {batch} ({bs} configurations, grid {settings.gpts(atoms)})")
    simulate_unit(atoms, settings, seeds, out, progress=progress, series=series,
                  perturbation=perturbation, provenance={
        "config_hash": config_hash(params),
        "unit_key": unit_key(params, atoms.info["structure"], thickness),
        "seed": params["seed"], "batch": batch,
    })


def hashed_simulation(simulation: dict) -> dict:
    """The ``simulation`` section as unit keys and stage parameters hash it:
    perturbations switched off as absent (:func:`strip_disabled`), and the
    PRISM keys absent while PRISM is off (the window bounds only ever refuse
    a config, so they never enter), so units simulated before the option
    existed are reused."""
    out = strip_disabled(simulation)
    drop = {"prism_min_window_A", "prism_spread_factor"}
    if out.get("prism_interpolation") is None:
        drop.add("prism_interpolation")
    return {k: v for k, v in out.items() if k not in drop}
