"""Campaign configuration: JSON-schema validation with defaults, plus the
consistency checks a schema cannot express.

Every error is a :class:`ConfigError` with one line that names the key, the
bad value and what would be valid. Validation runs in ``common.smk`` before
Snakemake builds the DAG, so no job starts on a bad config.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
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


def first_sentence(text: str) -> str:
    """The first sentence of a schema description: up to a full stop that
    ends a word (followed by a space or the end), so "0.01" stays whole."""
    text = " ".join(text.split())
    m = re.search(r"\.(\s|$)", text)
    return text[:m.start()] if m else text


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
    desc = f" ({first_sentence(desc)})" if desc else ""
    return f"config key {path!r}: value {error.instance!r} is invalid; valid: {hint}{desc}"


#: Profiles directory: ``site: <name>`` loads ``profiles/<name>/site.yaml``.
PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"

#: Environment variable naming the site of the profile a run uses (a
#: ``site.yaml`` path); ``common.smk`` sets it from ``--profile`` so that a
#: user's ``--config`` (which replaces the profile's ``config:`` list) keeps
#: the profile's site, and jobs started by a scheduler inherit it.
SITE_ENV = "CBEDFLOW_SITE"


def _read_site(path: Path) -> dict:
    with open(path) as fh:
        site = yaml.safe_load(fh)
    if not isinstance(site, dict):
        raise ConfigError(f"{path}: expected a mapping of site keys, got {type(site).__name__}")
    return site


def _site_by_name(name: str) -> dict:
    path = PROFILES_DIR / name / "site.yaml"
    if not path.exists():
        names = sorted(p.parent.name for p in PROFILES_DIR.glob("*/site.yaml"))
        raise ConfigError(f"config key 'site': value {name!r} is invalid; valid: a mapping "
                          f"or a profile with a site.yaml: {', '.join(names)}")
    return _read_site(path)


def resolve_site(config: dict, default_site: str | Path | None = None) -> dict:
    """Resolve ``site`` to a mapping of site keys.

    ``site: <name>`` loads ``profiles/<name>/site.yaml``; a mapping overrides
    keys of the site named by its ``name`` (``--config 'site={name: frontier,
    ranks_per_job: 8}'``) or, without a name, of ``default_site``. Without
    ``site`` the ``default_site`` (a ``site.yaml`` path, normally the one of
    the ``--profile`` in use, see :data:`SITE_ENV`) applies. Profiles name
    their site so a user's own ``--configfile`` never repeats its settings.
    """
    site = config.get("site")
    base: dict = {}
    if default_site:
        path = Path(default_site)
        if path.is_file():
            base = _read_site(path)
        elif (PROFILES_DIR / str(default_site) / "site.yaml").exists():
            base = _site_by_name(str(default_site))
    if site is None:
        return dict(config, site=base) if base else config
    if isinstance(site, str):
        return dict(config, site=_site_by_name(site))
    if isinstance(site, dict):
        name = site.get("name")
        if isinstance(name, str) and (PROFILES_DIR / name / "site.yaml").exists():
            base = _site_by_name(name)
        elif name is not None and name != base.get("name"):
            base = {}  # a site of the user's own, given whole
        return dict(config, site={**base, **site})
    return config


def _schema_types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def coerce_strings(instance: Any, schema: dict) -> Any:
    """Convert strings where the schema wants a number, integer, boolean or null.

    Snakemake parses nested ``--config`` values (``train={epochs: 5}``) with
    YAML's BaseLoader, which keeps every scalar a string; ``common.smk``
    applies this to the command line's entries only (config files stay
    strict): a string that reads (YAML 1.1) as a value of an allowed
    non-string type becomes that value. Strings where strings are allowed are
    left alone.
    """
    types = _schema_types(schema)
    if isinstance(instance, str) and types and "string" not in types:
        try:
            value = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        ok = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "boolean": lambda v: isinstance(v, bool),
              "null": lambda v: v is None}
        if any(ok[t](value) for t in types if t in ok):
            return value
        return instance
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce_strings(v, props[k] if k in props else
                                  extra if isinstance(extra, dict) else {})
                for k, v in instance.items()}
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(v, schema["items"]) for v in instance]
    return instance


def validate(config: dict | None, default_site: str | Path | None = None) -> dict:
    """Validate ``config`` against the schema and fill in defaults.

    ``default_site``: the site (a ``site.yaml`` path or profile name) to use
    when ``config`` names none (see :func:`resolve_site`).
    Returns a new dict; raises :class:`ConfigError` on the first problem.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a mapping of keys, got {type(config).__name__}")
    config = resolve_site(config, default_site)
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


def check_splits(config: dict) -> None:
    """Every split of every task gets at least one structure of every class
    (the split is stratified by class: ``examples.split_counts``).

    A check of the learning half, not of the physics: ``common.smk`` and
    ``cbedflow validate`` run it before any job (not after the simulation
    half); :func:`validate` alone does not, so a simulation-only use of the
    package (packing tests, a dataset of a few structures) stays possible."""
    from .campaign import Campaign
    from .examples import split_counts
    from .tasks import get_task, structure_label

    fr = config["split"]
    specs = Campaign(config).structures
    for name in config["tasks"]:
        task = get_task(name)
        by_class: dict[int, int] = {}
        for spec in specs:
            lab = structure_label(task, spec)
            if lab is not None:
                by_class[lab] = by_class.get(lab, 0) + 1
        for lab, n in sorted(by_class.items()):
            n_test, n_val, n_train = split_counts(n, fr)
            short = [f"{k} {v}" for k, v in (("train", n_train), ("validation", n_val),
                                             ("test", n_test)) if v < 1]
            if short:
                raise ConfigError(
                    f"config key 'split': value {{'validation': {fr['validation']}, 'test': "
                    f"{fr['test']}}} is invalid for task {name}: class {task.classes[lab]!r} "
                    f"has {n} structure(s), leaving {', '.join(short)}; valid: fractions that "
                    "give every split >= 1 structure of every class (or raise "
                    "structures.per_class)")


def load(path: str | Path, default_site: str | Path | None = None) -> dict:
    """Read a YAML config file and validate it (one-line errors: a missing or
    unreadable file, a YAML syntax error, an empty file, a bad value)."""
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}; valid: a YAML "
                          "mapping of config keys (see config/config.yaml)") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty; valid: a YAML mapping of config "
                          "keys (see config/config.yaml; {} for every default)")
    try:
        return validate(raw, default_site)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_hash(config: dict, sections: tuple[str, ...] | None = None) -> str:
    """Stable short hash of (a part of) the config, for provenance."""
    part = config if sections is None else {k: config[k] for k in sections if k in config}
    blob = json.dumps(part, sort_keys=True, separators=(",", ":"))
    from .storage import digest

    return digest(blob)
