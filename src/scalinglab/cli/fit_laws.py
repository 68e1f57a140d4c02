"""`scalinglab fit --law floor | broken | joint`: the laws beyond the plain power law, one fit per
group of the rows that fit.py selected, printed as text or JSON."""

from __future__ import annotations

import json

from scalinglab.cli.json_output import json_ready, json_safe
from scalinglab.core.errors import UserError
from scalinglab.laws.inputs import per_group

JOINT_METHODS = ("vpro", "chinchilla")


def run_floor(args, frame, clusters, rule: str) -> int:
    from scalinglab.laws.floor_law import fit_floor_law

    def fit(rows):
        return fit_floor_law(
            rows,
            args.x,
            args.y,
            cluster=clusters,
            bootstrap=args.bootstrap,
            seed=args.seed,
            confidence=args.confidence,
        )

    _print(per_group(frame, args.group, fit), args, rule)
    return 0


def run_broken(args, frame, rule: str) -> int:
    from scalinglab.laws.broken_power_law import fit_broken_power_law

    def fit(rows):
        return fit_broken_power_law(rows[args.x].to_numpy(float), rows[args.y].to_numpy(float))

    _print(per_group(frame, args.group, fit), args, rule)
    return 0


def run_joint(args, frame, clusters) -> int:
    if args.method not in JOINT_METHODS:
        raise UserError(f"unknown joint method '{args.method}'; use one of {', '.join(JOINT_METHODS)}")
    from scalinglab.laws.joint.fit import fit_joint

    def fit(rows):
        return fit_joint(
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

    results = per_group(frame, args.group, fit)
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


def _print(results, args, rule: str) -> None:
    """The floor and broken laws' output: a JSON list of one object per group, or a line per group."""
    if args.json:
        records = [{"group": json_safe(labels), **fit.to_dict(), "epoch_rule": rule} for labels, fit in results]
        print(json.dumps(json_ready(records), indent=2, allow_nan=False))
    else:
        for labels, fit in results:
            print(f"[{', '.join(f'{k}={v}' for k, v in labels.items()) or 'all'}] {fit.summary()}")
