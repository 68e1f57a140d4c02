"""`--filter COL=VALUE` expressions of the command line: keep the rows where every one holds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def parse_filters(expressions: Sequence[str], frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows where every `col=value` holds; value is read as the column's type."""
    for expression in expressions:
        column, sep, text = expression.partition("=")
        column, text = column.strip(), text.strip()
        if not sep or not column or not text:
            raise UserError(f"filter '{expression}' is not COL=VALUE; write e.g. --filter seed=0")
        if column not in frame.columns:
            raise UserError(
                f"filter '{expression}': no column '{column}'; available: {', '.join(map(str, frame.columns))}"
            )
        values = frame[column]
        mask = _filter_mask(values, text, expression)
        if not mask.any():
            present = ", ".join(map(str, sorted(values.dropna().unique().tolist(), key=str)[:10]))
            raise UserError(f"filter '{expression}' matches no rows; '{column}' holds: {present}")
        frame = frame[mask]
    return frame


def _filter_mask(values: pd.Series, text: str, expression: str) -> np.ndarray:
    kind = values.dtype
    if pd.api.types.is_bool_dtype(kind):
        word = text.lower()
        if word not in _TRUE | _FALSE:
            raise UserError(f"filter '{expression}': column holds true/false, not '{text}'")
        return (values == (word in _TRUE)).to_numpy()
    if pd.api.types.is_integer_dtype(kind) or pd.api.types.is_float_dtype(kind):
        try:
            number = float(text)
        except ValueError:
            raise UserError(f"filter '{expression}': the column holds numbers, not '{text}'") from None
        if pd.api.types.is_integer_dtype(kind):
            if not number.is_integer():
                raise UserError(f"filter '{expression}': the column holds integers, not '{text}'")
            try:  # exact: seeds such as 2000000000 and 2000000001 are different runs
                target = int(text)
            except ValueError:
                target = int(number)
            return (values == target).to_numpy(dtype=bool, na_value=False)
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        # Floats read back from CSV or computed in Python may differ in the last bits.
        return np.isclose(numbers, number, rtol=1e-9, atol=0.0) | (numbers == number)
    return (values.astype(str) == text).to_numpy()
