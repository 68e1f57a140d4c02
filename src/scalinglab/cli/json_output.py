"""JSON for other tools: group labels and results with numpy scalars as Python numbers and
non-finite numbers as null (JSON has no NaN or infinity; `allow_nan=False` then never fails)."""

from __future__ import annotations

import math


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
