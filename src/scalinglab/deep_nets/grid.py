"""The deep-net grid from the config section `deep_nets`: one training job per (model, dataset, P),
one analysis per (model, dataset). The rule file reads these; nothing here imports torch."""

from __future__ import annotations


def cells(dn: dict, model, dataset, P) -> list[str]:
    """The cells (one Parquet per seed) of one (model, dataset, P): one training job."""
    return [f"results/runs/deep_nets/model~{model}/dataset~{dataset}/P~{P}/seed~{seed}.parquet" for seed in dn["seeds"]]


def runs(dn: dict, model, dataset) -> list[str]:
    """Every cell of one (model, dataset): all P and seeds, the input of its analysis."""
    return [cell for P in dn["train_sizes"] for cell in cells(dn, model, dataset, P)]


def all_cells(dn: dict) -> list[str]:
    return [cell for model in dn["models"] for dataset in dn["datasets"] for cell in runs(dn, model, dataset)]


def fits(dn: dict) -> list[str]:
    return [
        f"results/fits/deep_nets/model~{model}/dataset~{dataset}.json"
        for model in dn["models"]
        for dataset in dn["datasets"]
    ]
