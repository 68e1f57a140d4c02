"""The perceptron grid from the config section `perceptron`: one sweep per alpha. The rule file reads
it; nothing here imports torch."""

from __future__ import annotations

from scalinglab.core.config import number_name


def runs(perc: dict) -> list[str]:
    return [f"results/runs/perceptron/alpha~{number_name(alpha)}.parquet" for alpha in perc["alphas"]]
