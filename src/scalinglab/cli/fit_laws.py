"""`scalinglab fit --law floor | broken | joint`: the laws beyond the plain power law, one fit per
group of the rows that fit.py selected, printed as text or JSON; and the JSON helpers fit.py shares."""

from __future__ import annotations

import json
import math

from scalinglab.core.errors import UserError

JOINT_METHODS = ("vpro", "chinchilla")


def json_safe(labels: dict) -> dict:
    """Group labels for JSON: NaN as None, numpy scalars as Python, anything else JSON lacks (a date) as str()."""
    out = {}
    for key, value in labels.items():
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None if value != value else str(value)  # P = inf as "inf": JSON has no infinity
        elif not (value is None or isinstance(value, (str, int, float, bool))):
            value = str(value)
        out[str(key)] = value
    return out


def json_ready(value):
    """Numbers as plain Python, non-finite floats as None, recursively (another module's dict)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if hasattr(value, "tolist"):
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_floor(args, frame, clusters, rule: str) -> int:
    from scalinglab.laws.floor_law import fit_floor_law

    groups = frame.groupby(args.group, sort=True, dropna=False) if args.group else [((), frame)]
    results = []
    for key, rows in groups:
        labels = dict(zip(args.group, key if isinstance(key, tuple) else (key,)))
        labels = {c: (v.item() if hasattr(v, "item") else v) for c, v in labels.items()}
        where = ", ".join(f"{k}={v}" for k, v in labels.items())
        try:
            fit = fit_floor_law(
                rows,
                args.x,
                args.y,
                cluster=clusters,
                bootstrap=args.bootstrap,
                seed=args.seed,
                confidence=args.confidence,
            )
        except UserError as exc:
            raise UserError(f"group {where}: {exc}" if where else str(exc)) from None
        results.append((labels, fit))
    if args.json:
        records = [{"group": json_safe(labels), **fit.to_dict(), "epoch_rule": rule} for labels, fit in results]
        print(json.dumps(json_ready(records), indent=2, allow_nan=False))
    else:
        for labels, fit in results:
            print(f"[{', '.join(f'{k}={v}' for k, v in labels.items()) or 'all'}] {fit.summary()}")
    return 0


def run_broken(args, frame, rule: str) -> int:
    from scalinglab.laws.broken_power_law import fit_broken_power_law

    groups = frame.groupby(args.group, sort=True, dropna=False) if args.group else [((), frame)]
    results = []
    for key, rows in groups:
        labels = dict(zip(args.group, key if isinstance(key, tuple) else (key,)))
        labels = {c: (v.item() if hasattr(v, "item") else v) for c, v in labels.items()}
        try:
            fit = fit_broken_power_law(rows[args.x].to_numpy(float), rows[args.y].to_numpy(float))
        except UserError as exc:
            where = ", ".join(f"{k}={v}" for k, v in labels.items())
            raise UserError(f"group {where}: {exc}" if where else str(exc)) from None
        results.append((labels, fit))
    if args.json:
        records = [{"group": json_safe(labels), **fit.to_dict(), "epoch_rule": rule} for labels, fit in results]
        print(json.dumps(json_ready(records), indent=2, allow_nan=False))
    else:
        for labels, fit in results:
            name = ", ".join(f"{k}={v}" for k, v in labels.items()) or "all"
            print(f"[{name}] {fit.summary()}")
    return 0


def run_joint(args, frame, clusters) -> int:
    if args.method not in JOINT_METHODS:
        raise UserError(f"unknown joint method '{args.method}'; use one of {', '.join(JOINT_METHODS)}")
    from scalinglab.laws.joint.fit import fit_joint

    groups = frame.groupby(args.group, sort=True, dropna=False) if args.group else [((), frame)]
    results = []
    for key, rows in groups:
        labels = {
            c: (v.item() if hasattr(v, "item") else v)
            for c, v in zip(args.group, key if isinstance(key, tuple) else (key,))
        }
        try:
            fit = fit_joint(
                rows,
                n=args.n,
                p=args.p,
                y=args.y,
                method=args.method,
                bootstrap=args.bootstrap,
                cluster=clusters,
                seed=args.seed,
                confidence=args.confidence,
            )
        except UserError as exc:
            where = ", ".join(f"{k}={v}" for k, v in labels.items())
            raise UserError(f"group {where}: {exc}" if where else str(exc)) from None
        results.append((labels, fit))
    if args.json:
        # one object, or (with --group) a list of objects as the power law's output
        records = [({"group": json_safe(labels)} if args.group else {}) | fit.to_dict() for labels, fit in results]
        output = json_ready(records if args.group else records[0])
        print(json.dumps(output, indent=2, allow_nan=False, default=str))
    else:
        for labels, fit in results:
            name = ", ".join(f"{k}={v}" for k, v in labels.items())
            print((f"[{name}] " if name else "") + fit.summary())
    return 0
