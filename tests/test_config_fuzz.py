"""Property-based config fuzzing (hypothesis): every wrong type, out-of-range
value or unknown key is rejected by validation with one line naming the key,
and nothing else (no traceback from deeper code)."""

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbedflow.config import ConfigError, load_schema, validate

SCHEMA = load_schema()


def _leaves(schema, path=()):
    for key, sub in schema.get("properties", {}).items():
        p = path + (key,)
        if sub.get("type") == "object" and "properties" in sub:
            yield from _leaves(sub, p)
        else:
            yield p, sub


LEAVES = list(_leaves(SCHEMA))
ANY = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                st.floats(allow_nan=True), st.text(max_size=8),
                st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                     st.integers(), max_size=2))


def _types(sub):
    t = sub.get("type")
    return {t} if isinstance(t, str) else set(t or [])


def _is_valid_type(value, sub):
    types = _types(sub)
    checks = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
              "null": lambda v: v is None}
    return any(checks[t](value) for t in types if t in checks)


def _set(cfg, path, value):
    d = cfg
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEAVES), ANY)
def test_wrong_types_rejected_by_name(leaf, value):
    path, sub = leaf
    if _is_valid_type(value, sub) or "enum" in sub:
        return
    cfg = {}
    _set(cfg, path, value)
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    msg = str(exc.value)
    assert "\n" not in msg and ".".join(path) in msg


NUMERIC = [(p, s) for p, s in LEAVES if _types(s) & {"integer", "number"}
           and ("minimum" in s or "maximum" in s or "exclusiveMinimum" in s)]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NUMERIC), st.integers(1, 10**6), st.booleans())
def test_out_of_range_rejected_by_name(leaf, excess, above):
    path, sub = leaf
    if above and "maximum" in sub:
        value = sub["maximum"] + excess
    else:
        lo = sub.get("minimum", sub.get("exclusiveMinimum"))
        if lo is None:
            return
        value = lo - excess
    cfg = {}
    _set(cfg, path, value)
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    msg = str(exc.value)
    assert "\n" not in msg
    assert ".".join(path) in msg or path[-1] in msg




def _objects(schema, path=()):
    yield path
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            yield from _objects(sub, path + (key,))


OBJECTS = list(_objects(SCHEMA))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(OBJECTS), st.from_regex(r"[a-z_]{1,12}", fullmatch=True), ANY)
def test_unknown_keys_rejected_by_name(path, key, value):
    d = SCHEMA
    for k in path:
        d = d["properties"][k]
    if key in d.get("properties", {}):
        return
    cfg = {}
    if path:
        _set(cfg, path, {key: value})
    else:
        cfg[key] = value
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    assert repr(key) in str(exc.value) and "\n" not in str(exc.value)


@settings(max_examples=100, deadline=None)
# thicknesses round to whole 3.905 Å cells: below 9.5 cells (37.1 Å) a
# thickness has fewer than the 10 cells the 11 step classes need
@given(st.floats(0.1, 5.0), st.floats(3.0, 37.0), st.integers(1, 200), st.integers(1, 4))
def test_inconsistent_combinations_rejected(slice_A, thick_A, px, binning):
    """Thickness/slice, step classes/cells and crop/pattern combinations."""
    cfg = {"simulation": {"slice_thickness_A": slice_A},
           "structures": {"thicknesses_A": [thick_A]},
           "crop": {"pattern_px": px, "binning": binning}}
    with pytest.raises(ConfigError) as exc:  # < 10 unit cells is always inconsistent
        validate(copy.deepcopy(cfg))
    assert "\n" not in str(exc.value)
