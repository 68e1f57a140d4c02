# Images (Sharma & Kaplan's CIFAR-10 experiment on any image dataset; scalinglab/images/): the
# ConvNet family per (dataset, P, width), quantile fits of loss and accuracy against N, figures.
from scalinglab.images import grid as images_grid

IMG = config["images"]

STAGE_TARGETS["images"] = (
    [
        "results/fits/images.parquet",
        "results/figures/images/dim_vs_dhat.png",
        *images_grid.scaling_figures(IMG),
        "results/tables/images.parquet",
        *images_grid.all_cells(IMG),
    ]
    if IMG["enabled"]
    else []
)


rule train_images:
    """ConvNet(width) of every seed on a seeded subset of P images; one Parquet per seed (cell)."""
    input:
        data=DATASET_FILE,
    output:
        cells=images_grid.cells(IMG, "{dataset}", "{P}", "{width}"),
    params:
        dataset=lambda wc: wc.dataset,
        P=lambda wc: wc.P,
        width=lambda wc: int(wc.width),
        seeds=IMG["seeds"],
        epochs=IMG["epochs"],
        batch=IMG["batch"],
        lr=IMG["lr"],
        weight_decay=IMG["weight_decay"],
        augment=lambda wc: images_grid.augment(IMG, wc.dataset),
        device=config["device"],
        checkpoint=lambda wc: f"results/checkpoints/images/dataset~{wc.dataset}/P~{wc.P}/width~{wc.width}.pt",
    threads: config["engine"]["threads"]
    resources:
        **training_resources(mem_mb=3000, runtime=120),
    wildcard_constraints:
        P=r"[1-9]\d*|all",
    log:
        "results/logs/train_images/dataset~{dataset}/P~{P}/width~{width}.log",
    benchmark:
        "results/benchmarks/train_images/dataset~{dataset}/P~{P}/width~{width}.tsv"
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/train_images.py"


rule aggregate_images:
    """Concatenate every image cell's Parquet into one tidy table (one row per epoch)."""
    input:
        parts=images_grid.all_cells(IMG),
    output:
        table="results/tables/images.parquet",
    log:
        "results/logs/aggregate_images.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/aggregate.py"


rule fit_images:
    """Quantile regressions of log loss and log accuracy on log N, both epoch rules, bootstrap over seeds."""
    input:
        table="results/tables/images.parquet",
        dimension=DIMENSION_TABLE,
    output:
        fits_table="results/fits/images.parquet",
        fits_json="results/fits/images.json",
        caption="results/report/images_fits.rst",
    params:
        quantiles=IMG["quantiles"],
        bootstrap=IMG["bootstrap"],
        reference_k=DIM["reference_k"],
    log:
        "results/logs/fit_images.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/fit_images.py"


rule plot_images:
    """Liu's 2x2 figure for one dataset and train size: violins per N, quantile lines, 4/alpha."""
    input:
        table="results/tables/images.parquet",
        fits="results/fits/images.parquet",
    output:
        figure=report(
            "results/figures/images/dataset~{dataset}/P~{P}/scaling.png",
            caption=generated_caption("images_fits.rst"),
            category=CATEGORIES["images"],
            subcategory="figures",
            labels={"dataset": "{dataset}", "P": "{P}", "figure": "loss and accuracy against N"},
        ),
    params:
        dataset=lambda wc: wc.dataset,
        P=lambda wc: wc.P,
    wildcard_constraints:
        P=r"[1-9]\d*|all",
    log:
        "results/logs/plot_images/dataset~{dataset}/P~{P}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/plot_images.py"


rule plot_images_dims:
    """4/alpha of each image dataset against its estimated intrinsic dimension (MLE and TwoNN)."""
    input:
        fits="results/fits/images.parquet",
        dimension=DIMENSION_TABLE,
    output:
        figure=report(
            "results/figures/images/dim_vs_dhat.png",
            caption=generated_caption("images_fits.rst"),
            category=CATEGORIES["images"],
            subcategory="figures",
            labels={"dataset": "all", "P": "-", "figure": "4/alpha against estimated d"},
        ),
    params:
        reference_k=DIM["reference_k"],
    log:
        "results/logs/plot_images_dims.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/plot_images_dims.py"
