"""Campaign configuration: JSON-schema validation with defaults, plus the
consistency checks a schema cannot express.

Every error is a :class:`ConfigError` with one line that names the key, the
bad value and what would be valid. Validation runs in ``common.smk`` before
Snakemake builds the DAG, so no job starts on a bad config.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid campaign configuration (one-line message)."""


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_schema() -> dict:
    """The config schema (a fresh copy)."""
    return copy.deepcopy(_schema())


def _fill_defaults(instance: Any, schema: dict) -> Any:
    """Recursively insert schema defaults for missing object keys."""
    if schema.get("type") == "object" and isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                instance[key] = _fill_defaults(instance[key], sub)
    return instance


def _valid_hint(schema: dict) -> str:
    """What the schema accepts, in words."""
    parts = []
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    t = schema.get("type")
    if t:
        parts.append(t if isinstance(t, str) else " or ".join(t))
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    if lo is not None or hi is not None:
        lo_b = "(" if "exclusiveMinimum" in schema else "["
        hi_b = ")" if "exclusiveMaximum" in schema else "]"
        parts.append(f"in {lo_b}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{hi_b}")
    if "minItems" in schema or "maxItems" in schema:
        parts.append(f"with {schema.get('minItems', 0)}..{schema.get('maxItems', 'any')} items")
    if schema.get("type") == "object" and schema.get("additionalProperties") is False:
        parts.append("with keys " + ", ".join(schema.get("properties", {})))
    return " ".join(parts) or "see workflow/schemas/config.schema.yaml"


def _error_message(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = ", ".join(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = f"in {path!r}" if error.absolute_path else "at the top level"
        return (f"config: unknown key(s) {', '.join(map(repr, extra))} {where}; "
                f"valid keys: {allowed}")
    if error.validator == "propertyNames":
        return (f"config key {path!r}: invalid name {error.instance!r}; "
                f"names must match {error.schema.get('pattern')!r}")
    hint = _valid_hint(error.schema)
    desc = error.schema.get("description", "")
    desc = f" ({desc.strip().split('.')[0]})" if desc else ""
    return f"config key {path!r}: value {error.instance!r} is invalid; valid: {hint}{desc}"


#: Profiles directory: ``site: <name>`` loads ``profiles/<name>/site.yaml``.
PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


def resolve_site(config: dict) -> dict:
    """Replace ``site: <name>`` by the mapping in ``profiles/<name>/site.yaml``.

    Profiles name their site (``config: ["site=summit"]``) so a user's own
    ``--configfile`` never has to repeat the site's settings.
    """
    site = config.get("site")
    if isinstance(site, str):
        path = PROFILES_DIR / site / "site.yaml"
        if not path.exists():
            names = sorted(p.parent.name for p in PROFILES_DIR.glob("*/site.yaml"))
            raise ConfigError(f"config key 'site': value {site!r} is invalid; valid: a mapping "
                              f"or a profile with a site.yaml: {', '.join(names)}")
        with open(path) as fh:
            config = dict(config, site=yaml.safe_load(fh))
    return config


def validate(config: dict | None) -> dict:
    """Validate ``config`` against the schema and fill in defaults.

    Returns a new dict; raises :class:`ConfigError` on the first problem.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a mapping of keys, got {type(config).__name__}")
    config = resolve_site(config)
    instance = _fill_defaults(copy.deepcopy(config), load_schema())
    import jsonschema  # only the simulation environment validates configs

    schema = load_schema()
    # strict integers: JSON Schema accepts 2.0 as an integer, numpy seeds and
    # array sizes do not
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool))
    validator = jsonschema.validators.extend(base, type_checker=checker)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_error_message(errors[0]))
    check_consistency(instance)
    return instance


def wavelength_A(energy_kV: float) -> float:
    """Relativistic electron wavelength [Å] at ``energy_kV`` [kV].

    Closed form (h / sqrt(2 m e V (1 + eV / 2mc^2))); written here so that
    validating a config needs no physics package.
    """
    v = energy_kV * 1e3
    return 12.264259 / math.sqrt(v * (1.0 + 0.978476e-6 * v))


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


def load(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    with open(path) as fh:
        raw = yaml.safe_load(fh)
    try:
        return validate(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_hash(config: dict, sections: tuple[str, ...] | None = None) -> str:
    """Stable short hash of (a part of) the config, for provenance."""
    part = config if sections is None else {k: config[k] for k in sections if k in config}
    blob = json.dumps(part, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
