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
import re
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid campaign configuration (one-line message)."""


@functools.lru_cache(maxsize=1)
def _core_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def merge_fragment(schema: dict, fragment: dict) -> dict:
    """``schema`` with a campaign's schema fragment merged in (in place): a
    top-level key of the fragment that the schema lacks is a new section; one
    it has adds its ``properties`` (and may replace the description)."""
    props = schema["properties"]
    for key, sub in fragment.items():
        if key in props and props[key].get("type") == "object":
            props[key].setdefault("properties", {}).update(sub.get("properties", {}))
            if "description" in sub:
                props[key]["description"] = sub["description"]
        else:
            props[key] = sub
    return schema


@functools.lru_cache(maxsize=8)
def _schema(campaign: str | None) -> dict:
    from .campaigns import DEFAULT, CampaignError, campaign_class

    try:
        cls = campaign_class(campaign)
    except CampaignError as exc:
        raise ConfigError(str(exc)) from None
    schema = merge_fragment(copy.deepcopy(_core_schema()), cls.schema_fragment())
    props = schema["properties"]
    names = list(cls.tasks)
    props["campaign"]["default"] = DEFAULT
    props["tasks"]["items"]["enum"] = names
    props["tasks"]["default"] = names[:1]
    props["train"]["properties"]["variants"]["propertyNames"] = {"enum": names}
    # train.by_task: per task, any train key but these two, without defaults
    # (an override says only what differs)
    by_task = props["train"]["properties"]["by_task"]
    by_task["propertyNames"] = {"enum": names}
    by_task["additionalProperties"] = {
        "type": "object", "additionalProperties": False,
        "properties": {k: {kk: vv for kk, vv in v.items() if kk != "default"}
                       for k, v in props["train"]["properties"].items()
                       if k not in ("variants", "by_task")}}
    props["predict"]["properties"]["task"]["enum"] = names + [None]
    return schema


def load_schema(campaign: str | None = None) -> dict:
    """The config schema of ``campaign`` (default: the default campaign): the
    core schema, the campaign's fragment and its task names (a fresh copy)."""
    return copy.deepcopy(_schema(campaign))


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
    campaign = config.get("campaign")
    if campaign is not None and not isinstance(campaign, str):
        raise ConfigError(f"config key 'campaign': value {campaign!r} is invalid; valid: a "
                          "campaign name (cbedflow.campaigns.REGISTRY) or module:Class")
    schema = load_schema(campaign)
    instance = _fill_defaults(copy.deepcopy(config), schema)
    import jsonschema  # only the simulation environment validates configs

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


def check_consistency(config: dict) -> None:
    """Checks across keys that the JSON schema cannot express: the
    campaign's own (``Campaign.check_config``)."""
    from .campaigns import get_campaign

    get_campaign(config).check_config(config)


def check_splits(config: dict) -> None:
    """Every split of every task gets at least one sample of every class
    (the split is stratified by class: ``examples.split_counts``; a
    regression task is one class).

    A check of the learning half, not of the physics: ``common.smk`` and
    ``cbedflow validate`` run it before any job (not after the simulation
    half); :func:`validate` alone does not, so a simulation-only use of the
    package (packing tests, a dataset of a few samples) stays possible."""
    from .campaigns import get_campaign
    from .examples import split_counts
    from .tasks import get_task

    fr = config["split"]
    camp = get_campaign(config)
    for name in config["tasks"]:
        task = get_task(camp, name)
        by_class: dict[int, int] = {}
        for lab in camp.sample_classes(task).values():
            by_class[lab] = by_class.get(lab, 0) + 1
        for lab, n in sorted(by_class.items()):
            n_test, n_val, n_train = split_counts(n, fr)
            short = [f"{k} {v}" for k, v in (("train", n_train), ("validation", n_val),
                                             ("test", n_test)) if v < 1]
            if short:
                what = f"class {task.classes[lab]!r}" if task.classes else "the task"
                raise ConfigError(
                    f"config key 'split': value {{'validation': {fr['validation']}, 'test': "
                    f"{fr['test']}}} is invalid for task {name}: {what} has {n} sample(s), "
                    f"leaving {', '.join(short)}; valid: fractions that give every split >= 1 "
                    "sample of every class (or more samples per class)")


def overlay(base: dict, top: dict) -> dict:
    """``base`` updated by ``top``, mappings merged key by key (recursively),
    anything else replaced: what Snakemake does with several
    ``--configfile`` files (``snakemake.utils.update_config``, written out
    here so that the package reads configs without importing Snakemake)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = value
    return out


def load(path: str | Path | list, default_site: str | Path | None = None) -> dict:
    """Read a YAML config file and validate it (one-line errors: a missing or
    unreadable file, a YAML syntax error, an empty file, a bad value). A list
    of files is read in order, each laid over the ones before (:func:`overlay`),
    as ``snakemake --configfile a.yaml b.yaml`` does."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    raw = {}
    for p in paths:
        layer = _read(p)
        if not isinstance(layer, dict):
            raise ConfigError(f"{p}: config: expected a mapping of keys, got "
                              f"{type(layer).__name__}")
        raw = overlay(raw, layer)
    try:
        return validate(raw, default_site)
    except ConfigError as exc:
        raise ConfigError(f"{' + '.join(map(str, paths))}: {exc}") from None


def _read(path: str | Path):
    """The YAML document of one config file (one-line errors)."""
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
    return raw


def config_hash(config: dict, sections: tuple[str, ...] | None = None) -> str:
    """Stable short hash of (a part of) the config, for provenance."""
    part = config if sections is None else {k: config[k] for k in sections if k in config}
    blob = json.dumps(part, sort_keys=True, separators=(",", ":"))
    from .storage import digest

    return digest(blob)
