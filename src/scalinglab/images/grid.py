"""The image grid from the config section `images`: its bundles (dataset, P, width), their cells and
figures, and each dataset's augmentation. The rule file reads these; nothing here imports torch."""

from __future__ import annotations


def cells(img: dict, dataset, P, width) -> list[str]:
    """The cells (one Parquet per seed) of one (dataset, P, width): one training job."""
    return [f"results/runs/images/dataset~{dataset}/P~{P}/width~{width}/seed~{seed}.parquet" for seed in img["seeds"]]


def all_cells(img: dict) -> list[str]:
    """Every cell; P is "all" (the whole training split) or a number of images."""
    return [
        cell
        for dataset in img["datasets"]
        for P in img["train_sizes"]
        for width in img["widths"]
        for cell in cells(img, dataset, P, width)
    ]


def scaling_figures(img: dict) -> list[str]:
    return [
        f"results/figures/images/dataset~{dataset}/P~{P}/scaling.png"
        for dataset in img["datasets"]
        for P in img["train_sizes"]
    ]


def augment(img: dict, dataset: str) -> str:
    """The augmentation of one dataset: its entry in images.augment (a map), else "auto"."""
    setting = img["augment"]
    return setting.get(dataset, "auto") if isinstance(setting, dict) else setting
