"""The random-feature grid from the config section `random_features`: one sweep per (a, b). The rule
file reads these; nothing here imports torch."""

from __future__ import annotations

from scalinglab.core.config import number_name


def pair_name(pair: dict) -> str:
    return f"a~{number_name(pair['a'])}_b~{number_name(pair['b'])}"


def runs(rf: dict) -> list[str]:
    names = dict.fromkeys(pair_name(pair) for pair in rf["pairs"])  # a pair listed twice runs once
    return [f"results/runs/random_features/{name}.parquet" for name in names]


def pair(rf: dict, a: str, b: str) -> dict:
    """The config entry of the (a, b) of a file name (its own numbers, not the name's rounded ones),
    with its time window and the time sweep's P filled in from `time`."""
    entry = next(p for p in rf["pairs"] if pair_name(p) == f"a~{a}_b~{b}")
    return {
        "a": float(entry["a"]),
        "b": float(entry["b"]),
        "times": entry.get("times", rf["time"]["window"]),
        "time_P": entry.get("time_P", rf["time"]["P"]),
    }
