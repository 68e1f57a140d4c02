# Intrinsic dimension of every data manifold (scalinglab/dimension/): TwoNN and MLE over a k sweep,
# with bootstrap CIs, for each teacher manifold and each image dataset. The teacher/student and image
# fits read the table as an optional input (DIMENSION_TABLE), so this file is included before theirs.
from scalinglab.dimension import grid as dimension_grid

DIM = config["dimension"]
DIMENSION_FILES = dimension_grid.files(config)
DIMENSION_TABLE = dimension_grid.table(config)  # an optional input of other experiments' fits: path or []

STAGE_TARGETS["dimension"] = (
    ["results/tables/dimension.parquet", "results/figures/dimension/dimension_vs_k.png", *DIMENSION_FILES]
    if DIMENSION_TABLE
    else []
)
STAGE_READS["dimension"] = ["teacher_student", "images"]  # the data it measures (dimension_grid.files)

ESTIMATOR_SETTINGS = {
    "estimators": DIM["estimators"],
    "ks": DIM["ks"],
    "subsample": DIM["subsample"],
    "bootstrap": DIM["bootstrap"],
    "seed": DIM["seed"],
    "mle_unbiased": DIM["mle_unbiased"],
}


rule dimension_teacher:
    """Estimates of one teacher manifold's dimension, for x alone and for (x, y), on its test set."""
    input:
        points="resources/teacher_student/data/d~{d}/test.pt",
    output:
        estimates="results/dimension/teacher_student/d~{d}.parquet",
    params:
        d=lambda wc: int(wc.d),
        **ESTIMATOR_SETTINGS,
    log:
        "results/logs/dimension_teacher/d~{d}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/dimension_teacher.py"


rule dimension_images:
    """Estimates of one image dataset's dimension: its flattened pixels in [0, 1], train and test images."""
    input:
        data=DATASET_FILE,
    output:
        estimates="results/dimension/images/{dataset}.parquet",
    params:
        dataset=lambda wc: wc.dataset,
        **ESTIMATOR_SETTINGS,
    log:
        "results/logs/dimension_images/{dataset}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/dimension_images.py"


rule aggregate_dimension:
    """All dimension estimates in one table, and the estimate-against-k figure."""
    input:
        parts=DIMENSION_FILES,
    output:
        table="results/tables/dimension.parquet",
        figure=report(
            "results/figures/dimension/dimension_vs_k.png",
            caption="../report/dimension_vs_k.rst",
            category=CATEGORIES["dimension"],
            subcategory="figures",
            labels={"figure": "estimate against k"},
        ),
    log:
        "results/logs/aggregate_dimension.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/aggregate_dimension.py"
