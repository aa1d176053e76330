"""Consistency checks of an LAO/STO config that a JSON schema cannot express."""

from __future__ import annotations

import math

from ...config import ConfigError
from ...forward import wavelength_A


def check_consistency(config: dict) -> None:
    """Checks across keys that the JSON schema cannot express."""
    from .structures import A_STO, ELEMENTS, N_STEP_CLASSES, thickness_cells

    s, sim = config["structures"], config["simulation"]
    lo, hi = s["intermix_fraction"]
    if lo > hi:
        raise ConfigError(f"config key 'structures.intermix_fraction': value {[lo, hi]} "
                          "is invalid; valid: [min, max] with min <= max")
    ph = sim["phonons"]
    if ph["configs"] % ph["batch_size"]:
        raise ConfigError(
            f"config key 'simulation.phonons.configs': value {ph['configs']} is invalid; "
            f"valid: a multiple of simulation.phonons.batch_size={ph['batch_size']}")
    missing = sorted(set(ELEMENTS) - set(ph["sigmas_A"]))
    if missing:
        raise ConfigError(
            f"config key 'simulation.phonons.sigmas_A': value {ph['sigmas_A']} is invalid; "
            f"valid: a sigma [Å] for every element of the structures ({', '.join(ELEMENTS)}), "
            f"missing {', '.join(missing)}")
    check_perturbations(config)
    check_prism(config)
    for t in s["thicknesses_A"]:
        nz = thickness_cells(t)
        if nz < N_STEP_CLASSES - 1:
            raise ConfigError(
                f"config key 'structures.thicknesses_A': value {t} is invalid; valid: >= "
                f"{(N_STEP_CLASSES - 1) * A_STO:.2f} Å ({N_STEP_CLASSES - 1} unit cells), so "
                f"that the {N_STEP_CLASSES} step classes have distinct depths")
        exact = nz * A_STO
        n_slices = exact / sim["slice_thickness_A"]
        if abs(n_slices - round(n_slices)) > 1e-6:
            raise ConfigError(
                f"config key 'simulation.slice_thickness_A': value {sim['slice_thickness_A']} "
                f"is invalid; valid: a divisor of every thickness (here {exact:.4f} Å = {nz} "
                f"unit cells), e.g. {A_STO / 2}")
    # the detector must stay inside the antialiasing aperture (2/3 Nyquist)
    k_max = (2.0 / 3.0) / (2.0 * sim["sampling_A"])
    max_mrad = k_max * wavelength_A(config["microscope"]["energy_kV"]) * 1e3
    if sim["detector_max_angle_mrad"] > max_mrad:
        raise ConfigError(
            f"config key 'simulation.detector_max_angle_mrad': value "
            f"{sim['detector_max_angle_mrad']} is invalid; valid: <= {max_mrad:.1f} mrad at "
            f"simulation.sampling_A={sim['sampling_A']} (or a finer sampling)")
    crop = config["crop"]
    if crop["pattern_px"] % crop["binning"]:
        raise ConfigError(
            f"config key 'crop.pattern_px': value {crop['pattern_px']} is invalid; valid: a "
            f"multiple of crop.binning={crop['binning']}")
    cells_x = s["n_substrate"] + s["n_film"] + 1
    mrad_per_px = wavelength_A(config["microscope"]["energy_kV"]) / (cells_x * A_STO) * 1e3
    n_px = 2 * math.ceil(sim["detector_max_angle_mrad"] / mrad_per_px) + 1
    if crop["pattern_px"] > n_px:
        raise ConfigError(
            f"config key 'crop.pattern_px': value {crop['pattern_px']} is invalid; valid: <= "
            f"{n_px}, the simulated pattern size ({mrad_per_px:.2f} mrad pixels out to "
            f"simulation.detector_max_angle_mrad={sim['detector_max_angle_mrad']})")
    n_x = sim["scan"]["positions_x"]
    w, j = crop["window_positions"] or n_x, crop["jitter_positions"]
    a = crop["align_positions"]
    if w + 2 * (j + a) > n_x:
        raise ConfigError(
            f"config key 'crop.window_positions': value {crop['window_positions']} with "
            f"crop.jitter_positions={j} and crop.align_positions={a} is invalid; valid: "
            f"window_positions + 2 x (jitter_positions + align_positions) <= "
            f"simulation.scan.positions_x={n_x}")
    if crop["train_windows"] > 2 * j + 1:
        raise ConfigError(
            f"config key 'crop.train_windows': value {crop['train_windows']} is invalid; "
            f"valid: 1..{2 * j + 1} (the distinct offsets of crop.jitter_positions={j})")
    d = config["augment"]["dose_e_per_pattern"]
    if d[0] > d[1]:
        raise ConfigError(f"config key 'augment.dose_e_per_pattern': value {d} is invalid; "
                          "valid: [min, max] with min <= max")
    if config["microscope"]["semiangle_mrad"] >= sim["detector_max_angle_mrad"]:
        raise ConfigError(
            f"config key 'simulation.detector_max_angle_mrad': value "
            f"{sim['detector_max_angle_mrad']} is invalid; valid: larger than "
            f"microscope.semiangle_mrad={config['microscope']['semiangle_mrad']} "
            "(the bright-field disc must fit on the detector)")
    inner = sim["haadf"]["inner_mrad"] or 3.0 * config["microscope"]["semiangle_mrad"]
    outer = sim["haadf"]["outer_mrad"] or max_mrad
    if outer > max_mrad or inner >= outer:
        key, value = (("outer_mrad", sim["haadf"]["outer_mrad"]) if outer > max_mrad
                      else ("inner_mrad", inner))
        raise ConfigError(
            f"config key 'simulation.haadf.{key}': value {value} is invalid; valid: "
            f"{config['microscope']['semiangle_mrad']} < inner < outer <= {max_mrad:.1f} mrad "
            f"(the antialiasing cutoff at simulation.sampling_A={sim['sampling_A']}; a finer "
            "sampling moves it out)")
    if inner <= config["microscope"]["semiangle_mrad"]:
        raise ConfigError(
            f"config key 'simulation.haadf.inner_mrad': value {inner} is invalid; valid: "
            f"> microscope.semiangle_mrad={config['microscope']['semiangle_mrad']} (outside "
            "the bright-field disc)")


def check_perturbations(config: dict) -> None:
    """``simulation.perturbations``: ranges in order, a source size only with
    enough phonon configurations to average it over, a thickness error only
    without exit-plane series (the thinner samples must be cuts of the
    thickest)."""
    from ...forward.perturb import perturbation_config

    p = perturbation_config(config)
    tasks = config.get("tasks") or []
    ideal = [t for t in tasks if t.endswith("_ideal")]
    if ideal and (p is None or p["fraction"] >= 1.0):
        raise ConfigError(
            f"config key 'tasks': {ideal[0]} trains on the ideal structures of a campaign that "
            "also has perturbed ones; valid: simulation.perturbations.enabled: true with "
            "fraction < 1 (e.g. 0.5), or drop the task")
    drawn = [t for t in tasks if t.endswith("_drawn")]
    if drawn and p is None:
        raise ConfigError(
            f"config key 'tasks': {drawn[0]} is broken down by the perturbations drawn, but "
            "simulation.perturbations are off; valid: enabled: true, or drop the task")
    if p is None:
        return
    sim = config["simulation"]
    for key in ("defocus_A", "cs_mm", "source_fwhm_A"):
        lo, hi = p[key]
        if lo > hi:
            raise ConfigError(f"config key 'simulation.perturbations.{key}': value {[lo, hi]} "
                              "is invalid; valid: [min, max] with min <= max")
    if p["source_fwhm_A"][1] > 0 and sim["phonons"]["configs"] < 3:
        raise ConfigError(
            f"config key 'simulation.perturbations.source_fwhm_A': value {p['source_fwhm_A']} "
            f"needs simulation.phonons.configs >= 3 (the source is averaged over the "
            f"configurations), not {sim['phonons']['configs']}; valid: [0, 0] or more configs")
    if (p["thickness_fraction"] > 0 and sim["exit_planes"]
            and len(config["structures"]["thicknesses_A"]) > 1):
        raise ConfigError(
            f"config key 'simulation.perturbations.thickness_fraction': value "
            f"{p['thickness_fraction']} cannot apply to exit-plane thickness series; valid: 0, "
            "or simulation.exit_planes: false")


def check_prism(config: dict) -> None:
    """``simulation.prism_interpolation``: the probe window (cell /
    interpolation) no narrower than ``prism_min_window_A`` nor than
    ``prism_spread_factor`` x semiangle [rad] x the thickest sample [Å] along
    x and y, no exit-plane series and no mistilt (abTEM 1.0.11's SMatrix has
    neither)."""
    from ...forward.perturb import perturbation_config
    from .structures import geometry_from_config

    sim = config["simulation"]
    f = sim.get("prism_interpolation")
    if not f:
        return
    s = config["structures"]
    geom = geometry_from_config(s)
    window = min(geom.extent_A) / f
    alpha = config["microscope"]["semiangle_mrad"] * 1e-3
    t_max = max(s["thicknesses_A"])
    need = max(sim["prism_min_window_A"], sim["prism_spread_factor"] * alpha * t_max)
    if window < need - 1e-9:
        why = (f"simulation.prism_min_window_A={sim['prism_min_window_A']} Å"
               if need == sim["prism_min_window_A"] else
               f"prism_spread_factor={sim['prism_spread_factor']} x {alpha * 1e3:g} mrad x "
               f"{t_max:g} Å = {need:.2f} Å")
        best = int(min(geom.extent_A) // need) if need > 0 else f
        raise ConfigError(
            f"config key 'simulation.prism_interpolation': value {f} is invalid for a "
            f"{geom.extent_A[0]:.2f} x {geom.extent_A[1]:.2f} Å cell: probe window "
            f"{window:.2f} Å < {why} (the validated bound, docs/performance.md); valid: "
            + (f"<= {best}, or null (multislice)" if best >= 1 else
               "null (multislice): the cell is narrower than the bound"))
    if sim["exit_planes"] and len(s["thicknesses_A"]) > 1:
        raise ConfigError(
            f"config key 'simulation.prism_interpolation': value {f} cannot record exit-plane "
            "thickness series (abTEM 1.0.11's SMatrix does not build exit planes); valid: "
            "simulation.exit_planes: false, or prism_interpolation: null")
    p = perturbation_config(config)
    if p is not None and p["max_tilt_mrad"] > 0:
        raise ConfigError(
            f"config key 'simulation.perturbations.max_tilt_mrad': value {p['max_tilt_mrad']} "
            "cannot be simulated with PRISM (simulation.prism_interpolation; abTEM's SMatrix "
            "has no tilt); valid: 0, or prism_interpolation: null")
