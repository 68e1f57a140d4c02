"""Load and validate the workflow configuration against the schema that ships beside this module (schema.yaml).

Errors are one line that names the key, e.g.
`config: teacher_student.d[0]: 0 is less than the minimum of 1`.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import jsonschema
import yaml

from scalinglab.core.errors import UserError

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")  # ships inside the package


def load_schema(path: str | Path | None = None) -> dict:
    with open(path or SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = ""
    for part in error.absolute_path:
        parts += f"[{part}]" if isinstance(part, int) else (f".{part}" if parts else str(part))
    return parts or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line for the most specific schema error."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = _key_path(error)
        prefix = f"{where}." if where != "(top level)" else ""
        return f"unknown key {', '.join(prefix + e for e in extra)}; allowed here: {', '.join(allowed)}"
    if error.validator == "minItems" and error.validator_value == 1:
        return f"{_key_path(error)}: the grid is empty; give at least one value"
    if error.validator in ("oneOf", "anyOf") and error.context:
        # show the branch that got furthest, not the union of every branch's complaint
        if not isinstance(error.instance, (dict, list)):
            return f"{_key_path(error)}: {error.instance!r} is not valid; expected {_expected(error)}"
        kinds = [
            b["properties"]["kind"]["const"] for b in error.schema.get("oneOf", []) if "kind" in b.get("properties", {})
        ]
        if kinds and isinstance(error.instance, dict) and error.instance.get("kind") not in kinds:
            got = f"{error.instance['kind']!r} is not" if "kind" in error.instance else "missing; it must be"
            return f"{_key_path(error)}.kind: {got} one of {', '.join(map(repr, kinds))}"
        best = _matching_branch_error(error) or jsonschema.exceptions.best_match(error.context)
        return _describe(best) if best.absolute_path != error.absolute_path else f"{_key_path(error)}: {best.message}"
    message = error.message.splitlines()[0]
    return f"{_key_path(error)}: {message}"


def _matching_branch_error(error: jsonschema.ValidationError):
    """For oneOf/anyOf: the deepest error of the branch whose `kind`-like consts matched, if any."""
    branches: dict = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    matching = [errs for errs in branches.values() if not any(e.validator == "const" for e in errs)]
    if len(matching) != 1:
        return None
    return max(matching[0], key=lambda e: len(list(e.absolute_path)))


def _expected(error) -> str:
    options = []
    for branch in error.schema.get("anyOf", error.schema.get("oneOf", [])):
        if "const" in branch:
            options.append(repr(branch["const"]))
        elif "type" in branch:
            low = branch.get("minimum")
            options.append(f"{branch['type']}" + (f" >= {low}" if low is not None else ""))
    return " or ".join(options) or "another value"


def _resolve(schema: dict, root: dict) -> dict:
    if "$ref" in schema:
        return root["$defs"][schema["$ref"].split("/")[-1]]
    return schema


def _fill_defaults(schema: dict, instance, root: dict):
    """Fill in the schema's defaults recursively (jsonschema validates but never fills)."""
    schema = _resolve(schema, root)
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            sub = _resolve(sub, root)
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(sub, instance[key], root)
    return instance


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of `config` with defaults filled in; raise UserError on the first problem."""
    schema = schema or load_schema()
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise UserError("config: the top level must be a mapping of keys to values")
    _check_finite(config)
    config = _fill_defaults(schema, copy.deepcopy(config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        # deepest error first: it names the most specific key
        error = max(errors, key=lambda e: len(list(e.absolute_path)))
        raise UserError(f"config: {_describe(error)}")
    _check_semantics(config)
    return config


def stage_names(schema: dict | None = None) -> list[str]:
    """The experiments: top-level sections that can be switched on and off."""
    schema = schema or load_schema()
    return [key for key, sub in schema["properties"].items() if "enabled" in sub.get("properties", {})]


def only_named_stages(config: dict, schema: dict | None = None) -> dict:
    """A preset runs the experiments it names: each stage section it leaves out is switched off
    (otherwise every experiment added to the tool later would silently join every preset)."""
    config = dict(config or {})
    for stage in stage_names(schema):
        config.setdefault(stage, {"enabled": False})
    return config


def _check_finite(value, where: str = "") -> None:
    """NaN and infinity pass every schema bound (comparisons with NaN are false): refuse them by
    name. Only a training-set size may be infinite (P = inf, fresh samples every step)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            _check_finite(sub, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _check_finite(sub, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        if math.isinf(value) and value > 0 and where.startswith("teacher_student.train_sizes["):
            return
        raise UserError(f"config: {where}: {value} is not a finite number; give a finite value")


def _check_semantics(config: dict) -> None:
    ts = config["teacher_student"]
    try:
        ts["schedule_by_d"] = {int(d): sched for d, sched in ts["schedule_by_d"].items()}
    except ValueError:
        raise UserError("config: teacher_student.schedule_by_d: keys must be integer dimensions d") from None
    unknown = sorted(set(ts["schedule_by_d"]) - set(ts["d"]))
    if unknown:
        raise UserError(f"config: teacher_student.schedule_by_d: d={unknown} not in teacher_student.d")
    width = ts["embedding_width"]
    high = [d for d in ts["d"] if d >= width]
    if high and ts["enabled"]:
        warnings.warn(
            f"teacher_student: d={high} >= embedding_width {width}: the x manifold has dimension "
            f"{width}, not d, for those teachers; raise teacher_student.embedding_width",
            stacklevel=2,
        )
    lam = config["perceptron"]["lambdas"]
    if config["perceptron"]["enabled"] and not lam["low"] < lam["high"]:
        raise UserError("config: perceptron.lambdas: low must be below high")
    window = config["perceptron"]["window"]
    if config["perceptron"]["enabled"] and not window[0] < window[1]:
        raise UserError(f"config: perceptron.window: {window} must be [low, high] with low < high")
    dim = config["dimension"]
    if dim["enabled"] and "mle" in dim["estimators"] and dim["reference_k"] not in dim["ks"]:
        raise UserError(f"config: dimension.reference_k: {dim['reference_k']} is not one of dimension.ks {dim['ks']}")
    sched = ts["schedule"]
    if sched["kind"] == "onecycle" and sched["steps"] < 2:
        raise UserError("config: teacher_student.schedule.steps: onecycle needs at least 2 steps")
    finite = [p for p in ts["train_sizes"] if p != "inf"]
    if finite and min(finite) < 2:
        raise UserError("config: teacher_student.train_sizes: P must be at least 2 (or 'inf')")


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"config: {path}: no such file")
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config: {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return validate(raw)


def canonical(value):
    """A config value with its dicts' keys sorted, recursively: Snakemake compares params by their
    text, and the key order of a YAML file is noise that must not trigger reruns."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def parse_train_size(value) -> float:
    """'inf' (or math.inf) -> inf; anything else -> int."""
    if value in ("inf", math.inf) or (isinstance(value, float) and math.isinf(value)):
        return math.inf
    return int(value)


def format_train_size(value) -> str:
    return "inf" if parse_train_size(value) == math.inf else str(int(value))
