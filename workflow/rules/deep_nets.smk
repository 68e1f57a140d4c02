# Implicit bias in deep nets (D'Amico, Bocchi & Negri; scalinglab/deep_nets/): CNN, ResNet, ViT over
# a P sweep; test error against Bartlett's spectral complexity along training; gamma1, gamma2,
# gamma_pred against gamma_meas per (model, dataset), tabulated beside the talk's and the perceptron's.
from scalinglab.deep_nets import grid as deep_nets_grid

DN = config["deep_nets"]
# the perceptron's gammas join the gamma table when that experiment runs (an optional input)
PERCEPTRON_FIT = "results/fits/perceptron.json" if config["perceptron"]["enabled"] else []

STAGE_TARGETS["deep_nets"] = (
    ["results/fits/deep_nets.parquet", "results/figures/deep_nets/gamma_table.png", *deep_nets_grid.all_cells(DN)]
    if DN["enabled"]
    else []
)


rule train_deep_nets:
    """Every seed of one (model, dataset, P): spectral complexity and test error at log-spaced steps."""
    input:
        data=DATASET_FILE,
    output:
        cells=deep_nets_grid.cells(DN, "{model}", "{dataset}", "{P}"),
    wildcard_constraints:
        model="cnn|resnet|vit",
    params:
        model=lambda wc: wc.model,
        dataset=lambda wc: wc.dataset,
        P=lambda wc: int(wc.P),
        seeds=DN["seeds"],
        epochs=DN["epochs"],
        batch=DN["batch"],
        n_logs=DN["n_logs"],
        test_size=DN["test_size"],
        # one family's settings: changing another family's reruns none of this family's jobs
        lr=lambda wc: DN["lr"][wc.model],
        width=lambda wc: DN["width"][wc.model],
        depth=lambda wc: DN["depth"].get(wc.model),
        device=config["device"],
        checkpoint=lambda wc: f"results/checkpoints/deep_nets/model~{wc.model}/dataset~{wc.dataset}/P~{wc.P}.pt",
    threads: config["engine"]["threads"]
    resources:
        **training_resources(mem_mb=3000, runtime=120),
    log:
        "results/logs/train_deep_nets/model~{model}/dataset~{dataset}/P~{P}.log",
    benchmark:
        "results/benchmarks/train_deep_nets/model~{model}/dataset~{dataset}/P~{P}.tsv"
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/train_deep_nets.py"


rule analyse_deep_nets:
    """gamma1, gamma2, gamma_pred vs gamma_meas of one (model, dataset); its three figures."""
    input:
        runs=lambda wc: deep_nets_grid.runs(DN, wc.model, wc.dataset),
    output:
        fits_json="results/fits/deep_nets/model~{model}/dataset~{dataset}.json",
        curves=report(
            "results/figures/deep_nets/model~{model}/dataset~{dataset}/error_vs_norm.png",
            caption="../report/deep_nets_pair.rst",
            category=CATEGORIES["deep_nets"],
            subcategory="deep nets",
            labels={"model": "{model}", "dataset": "{dataset}", "figure": "error against norm"},
        ),
        collapse=report(
            "results/figures/deep_nets/model~{model}/dataset~{dataset}/collapse.png",
            caption="../report/deep_nets_pair.rst",
            category=CATEGORIES["deep_nets"],
            subcategory="deep nets",
            labels={"model": "{model}", "dataset": "{dataset}", "figure": "collapse"},
        ),
        learning=report(
            "results/figures/deep_nets/model~{model}/dataset~{dataset}/learning_curve.png",
            caption="../report/deep_nets_pair.rst",
            category=CATEGORIES["deep_nets"],
            subcategory="deep nets",
            labels={"model": "{model}", "dataset": "{dataset}", "figure": "learning curve"},
        ),
    wildcard_constraints:
        model="cnn|resnet|vit",
    params:
        model=lambda wc: wc.model,
        dataset=lambda wc: wc.dataset,
        window=DN["window"],
        upper_fraction=DN["upper_fraction"],
        error=DN["error"],
    log:
        "results/logs/analyse_deep_nets/model~{model}/dataset~{dataset}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/analyse_deep_nets.py"


rule gamma_table_deep_nets:
    """The gamma table laid out like the talk's: every (model, dataset), and the perceptron when it ran."""
    input:
        fits=deep_nets_grid.fits(DN),
        perceptron=PERCEPTRON_FIT,
    output:
        fits_table="results/fits/deep_nets.parquet",
        fits_json="results/fits/deep_nets.json",
        caption="results/report/deep_nets.rst",
        figure=report(
            "results/figures/deep_nets/gamma_table.png",
            caption=generated_caption("deep_nets.rst"),
            category=CATEGORIES["deep_nets"],
            subcategory="deep nets",
            labels={"model": "all", "dataset": "all", "figure": "gamma table"},
        ),
    log:
        "results/logs/gamma_table_deep_nets.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/gamma_table_deep_nets.py"
