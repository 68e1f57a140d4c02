"""Load and validate the workflow configuration against the schema that ships beside this module (schema.yaml).

Errors are one line that names the key, e.g.
`config: teacher_student.d[0]: 0 is less than the minimum of 1`.
"""

from __future__ import annotations

import copy
import math
import re
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
    if error.validator == "type" and _whole_float(error.instance):
        return f"{_key_path(error)}: {error.instance!r} is not an integer; write {int(error.instance)}"
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


def _whole_float(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _is_integer(checker, value) -> bool:
    """Integers only: JSON Schema counts 1.0 as an integer, but a seed or width of 1.0 names different
    files and hashes to a different seed than 1 ("seed~1.0"), so whole-number floats are refused."""
    return isinstance(value, int) and not isinstance(value, bool)


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)

# YAML 1.1 (PyYAML, Snakemake's loader) reads 1e-3 as a string: it wants a dot (1.0e-3). YAML 1.2 and
# every user read it as a number, so a string of this form where the schema wants a number is one.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _wants_number(schema: dict, root: dict) -> bool:
    schema = _resolve(schema, root)
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    branches = schema.get("anyOf", []) + schema.get("oneOf", [])
    return "number" in kinds or any(_wants_number(b, root) for b in branches)


def _subschemas(schema: dict, key, root: dict) -> list[dict]:
    """The schemas that may apply to `key` of a mapping, or to a list's items when key is None
    (every oneOf/anyOf branch's)."""
    schema = _resolve(schema, root)
    found = []
    for branch in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        branch = _resolve(branch, root)
        if key is None:
            found += [branch["items"]] if "items" in branch else []
        elif key in branch.get("properties", {}):
            found.append(branch["properties"][key])
        elif isinstance(branch.get("additionalProperties"), dict):
            found.append(branch["additionalProperties"])
    return found


def _read_numbers(schema: dict, instance, root: dict):
    """Strings like '1e-3' where the schema wants a number, as numbers (see _EXPONENT_NUMBER)."""
    if isinstance(instance, dict):
        return {key: _read_numbers_in(_subschemas(schema, key, root), value, root) for key, value in instance.items()}
    if isinstance(instance, list):
        return [_read_numbers_in(_subschemas(schema, None, root), value, root) for value in instance]
    return instance


def _read_numbers_in(schemas: list[dict], value, root: dict):
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value) and any(_wants_number(s, root) for s in schemas):
        return float(value)
    for schema in schemas:
        value = _read_numbers(schema, value, root)
    return value


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of `config` with defaults filled in; raise UserError on the first problem."""
    schema = schema or load_schema()
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise UserError("config: the top level must be a mapping of keys to values")
    config = _read_numbers(schema, copy.deepcopy(config), schema)
    _check_finite(config)
    config = _fill_defaults(schema, config, schema)
    validator = Validator(schema)
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
    ts["schedule_by_d"] = {_integer_key(d): sched for d, sched in ts["schedule_by_d"].items()}
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
    for section in ("perceptron", "deep_nets"):
        window = config[section]["window"]
        if config[section]["enabled"] and not window[0] < window[1]:
            raise UserError(f"config: {section}.window: {window} must be [low, high] with low < high")
    dim = config["dimension"]
    if dim["enabled"] and "mle" in dim["estimators"] and dim["reference_k"] not in dim["ks"]:
        raise UserError(f"config: dimension.reference_k: {dim['reference_k']} is not one of dimension.ks {dim['ks']}")
    for key, sched in [
        ("schedule", ts["schedule"]),
        *((f"schedule_by_d.{d}", s) for d, s in ts["schedule_by_d"].items()),
    ]:
        if sched["kind"] == "onecycle" and sched["steps"] < 2:
            raise UserError(f"config: teacher_student.{key}.steps: onecycle needs at least 2 steps")
    finite = [p for p in ts["train_sizes"] if p != "inf"]
    if finite and min(finite) < 2:
        raise UserError("config: teacher_student.train_sizes: P must be at least 2 (or 'inf')")
    perc = config["perceptron"]
    few = [alpha for alpha in perc["alphas"] if round(alpha * perc["N"]) < 1]
    if perc["enabled"] and few:
        raise UserError(
            f"config: perceptron.alphas: alpha = {few[0]:g} gives P = alpha N < 1 example at N = {perc['N']}; "
            f"use alpha >= {1 / perc['N']:g}"
        )
    if dim["enabled"] and max(dim["ks"]) >= dim["subsample"]:
        raise UserError(
            f"config: dimension.ks: k = {max(dim['ks'])} needs more than k points, but dimension.subsample is "
            f"{dim['subsample']}; lower k or raise the subsample"
        )
    _check_local_dirs(config["datasets"])
    _check_fit_grids(config)
    _check_image_sizes(config["images"])
    _check_random_features(config["random_features"])
    root = config["datasets"]["root"]
    if "{" in root or "}" in root:
        raise UserError(
            f"config: datasets.root: {root!r} contains a brace, which Snakemake reads as a wildcard; "
            "choose a path without { or }"
        )


def _integer_key(d) -> int:
    """A schedule_by_d key as the integer d it names: `2` or "2", never 2.5 or "2.5" (int() would
    truncate those to d=2 and silently replace d=2's schedule)."""
    if isinstance(d, int) and not isinstance(d, bool):
        return d
    if isinstance(d, str) and re.fullmatch(r"[+-]?\d+", d.strip()):
        return int(d)
    raise UserError(
        f"config: teacher_student.schedule_by_d: key {d!r} is not an integer dimension d; "
        "use one of the integers in teacher_student.d"
    )


# datasets that ship inside a Python package (scikit-learn, mnist1d): no folder of original files to read
PACKAGED_DATASETS = ("digits", "mnist1d")


def _check_local_dirs(datasets: dict) -> None:
    packaged = sorted(set(datasets["local_dirs"]) & set(PACKAGED_DATASETS))
    if packaged:
        raise UserError(
            f"config: datasets.local_dirs.{packaged[0]}: {packaged[0]} ships with its Python package and is "
            "never read from a folder; remove this key"
        )


def _check_fit_grids(config: dict) -> None:
    """Grids that pass the schema but that the enabled stages' fits can never use: refuse them before
    any training, not after."""
    ts = config["teacher_student"]
    if ts["enabled"] and len(set(ts["widths"])) < 2:
        raise UserError(
            f"config: teacher_student.widths: {ts['widths']} has one width, but the fit of loss against N "
            "needs at least 2 widths; add a width"
        )
    joint = config.get("joint")
    if joint and joint.get("enabled"):
        _check_joint_grid(joint)


# training-split sizes of the image datasets, known without loading them ('all' is this many images)
TRAIN_SPLIT_SIZES = {"digits": 1438, "mnist": 60000, "fashion-mnist": 60000, "cifar10": 50000, "cifar100": 50000}


def _check_image_sizes(img: dict) -> None:
    """'all' and the split's size given as a number are one P: two jobs would train the same cells."""
    for dataset in img["datasets"] if img["enabled"] and "all" in img["train_sizes"] else []:
        size = TRAIN_SPLIT_SIZES[dataset]
        if size in img["train_sizes"]:
            raise UserError(
                f"config: images.train_sizes: {size} is the whole training split of {dataset} ({size:,} images), "
                "the same P as 'all'; give it once"
            )


def _check_random_features(rf: dict) -> None:
    """Repeated (a, b) pairs (one file each: the second entry's settings would be ignored), a variance
    sweep without P >> N, and a time sweep whose P cannot hold the modes its times learn."""
    if not rf["enabled"]:
        return
    seen: dict = {}
    for i, pair in enumerate(rf["pairs"]):
        first = seen.setdefault((float(pair["a"]), float(pair["b"])), i)
        if first != i:
            raise UserError(
                f"config: random_features.pairs[{i}]: (a, b) = ({pair['a']:g}, {pair['b']:g}) repeats pairs[{first}]; "
                "give each pair once, with all its settings in one entry"
            )
        t_max, P = max(pair.get("times", rf["time"]["window"])), pair.get("time_P", rf["time"]["P"])
        learned = (2 * t_max) ** (1 / pair["b"])  # k_t: the modes learned by t_max, which the time law needs P >> of
        if P <= learned:
            key = f"pairs[{i}].time_P" if "time_P" in pair else "time.P"
            raise UserError(
                f"config: random_features.{key}: P = {P} is too small for the time sweep of (a, b) = "
                f"({pair['a']:g}, {pair['b']:g}): its law needs P >> (2 t_max)^(1/b) = {learned:.0f}; "
                f"use P >= time.M = {rf['time']['M']} (P above M costs no more)"
            )
    low = min(rf["variance_Ps"])
    if low <= rf["variance_N"] + 1:
        raise UserError(
            f"config: random_features.variance_Ps: P = {low} is not above variance_N + 1 = {rf['variance_N'] + 1}; "
            f"the variance-limited law needs P >> N: use P values well above {rf['variance_N']}"
        )


# the joint law E + A N^-alpha + B P^-beta has 5 parameters: its fit needs >= 2 distinct N, >= 2 distinct P
# and >= 5 (N, P) configurations (laws/joint/data.py:enough; the schema's minItems gives the first two)
JOINT_MIN_CONFIGS = 5


def _check_joint_grid(joint: dict) -> None:
    widths, sizes = len(set(joint["widths"])), len(set(joint["train_sizes"]))
    if widths * sizes < JOINT_MIN_CONFIGS:
        raise UserError(
            f"config: joint: {widths} widths x {sizes} train_sizes give {widths * sizes} (N, P) configurations, "
            f"but the joint fit needs at least {JOINT_MIN_CONFIGS}; add a width or a train size"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping: PyYAML (and so Snakemake) keeps the
    last copy without a word, and a section given twice would silently lose its first copy."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise UserError(
                    f"config: {self.name} line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                    f"(first on line {seen[key] + 1}), and only the last copy would count; merge them into one"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path):
    """A config file's contents, with one-line errors for a missing file, bad YAML and repeated keys."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"config: {path}: no such file")
    try:
        with open(path) as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config: {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load(path: str | Path) -> dict:
    return validate(read_yaml(path))


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


def number_name(value) -> str:
    """A number as file-name text that reads back as the very same number: '%g' where that is exact
    (16, 21.1), else Python's shortest round-trip form (1234567.0, 4.0000001). '%g' alone rounds to
    six digits, so 1234567 and 1234568 would share one file and one job."""
    value = float(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)
