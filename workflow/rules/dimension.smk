# Intrinsic dimension of every data manifold: TwoNN and MLE over a k sweep, with bootstrap CIs.


rule dimension_teacher:
    """Estimates of one teacher manifold's dimension, for x alone and for (x, y), on its test set."""
    input:
        "resources/teacher_student/data/d~{d}/test.pt",
    output:
        "results/dimension/teacher_student/d~{d}.parquet",
    params:
        d=lambda wc: int(wc.d),
        estimators=DIM["estimators"],
        ks=DIM["ks"],
        subsample=DIM["subsample"],
        bootstrap=DIM["bootstrap"],
        seed=DIM["seed"],
        mle_unbiased=DIM["mle_unbiased"],
    log:
        "results/logs/dimension_teacher/d~{d}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/dimension_teacher.py"


rule dimension_images:
    """Estimates of one image dataset's dimension: its flattened pixels in [0, 1], train and test images."""
    input:
        dataset_file("{dataset}"),
    output:
        "results/dimension/images/{dataset}.parquet",
    params:
        dataset=lambda wc: wc.dataset,
        estimators=DIM["estimators"],
        ks=DIM["ks"],
        subsample=DIM["subsample"],
        bootstrap=DIM["bootstrap"],
        seed=DIM["seed"],
        mle_unbiased=DIM["mle_unbiased"],
    log:
        "results/logs/dimension_images/{dataset}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/dimension_images.py"


rule aggregate_dimension:
    """All dimension estimates in one table, and the estimate-against-k figure."""
    input:
        dimension_files(),
    output:
        table="results/tables/dimension.parquet",
        figure=report(
            "results/figures/dimension/dimension_vs_k.png",
            caption="../report/dimension_vs_k.rst",
            category="Intrinsic dimension",
            labels={"figure": "estimate against k"},
        ),
    log:
        "results/logs/aggregate_dimension.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/aggregate_dimension.py"
