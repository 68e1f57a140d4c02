# Implicit bias in the perceptron (D'Amico, Bocchi & Negri; scalinglab/perceptron/): error against
# norm, lambda_opt(P), the collapse, gamma_pred = gamma1 gamma2 against gamma_meas.
from scalinglab.perceptron import grid as perceptron_grid

PERC = config["perceptron"]

STAGE_TARGETS["perceptron"] = (
    ["results/fits/perceptron.json", "results/figures/perceptron/collapse.png", *perceptron_grid.runs(PERC)]
    if PERC["enabled"]
    else []
)


rule perceptron_sweep:
    """Fixed-norm minimisers for every lambda and seed at one alpha = P/N."""
    output:
        solutions="results/runs/perceptron/alpha~{alpha}.parquet",
    params:
        N=PERC["N"],
        alpha=lambda wc: float(wc.alpha),
        seeds=PERC["seeds"],
        lambdas=canonical(PERC["lambdas"]),
    threads: 1
    log:
        "results/logs/perceptron_sweep/alpha~{alpha}.log",
    benchmark:
        "results/benchmarks/perceptron_sweep/alpha~{alpha}.tsv"
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/perceptron_sweep.py"


rule analyse_perceptron:
    """gamma1, gamma2 and gamma_pred = gamma1 gamma2 against gamma_meas; the collapse; figures."""
    input:
        sweeps=perceptron_grid.runs(PERC),
    output:
        fits_json="results/fits/perceptron.json",
        caption="results/report/perceptron.rst",
        curves=report(
            "results/figures/perceptron/error_vs_norm.png",
            caption=generated_caption("perceptron.rst"),
            category=CATEGORIES["perceptron"],
            subcategory="perceptron",
            labels={"figure": "error against norm"},
        ),
        collapse=report(
            "results/figures/perceptron/collapse.png",
            caption="../report/perceptron_collapse.rst",
            category=CATEGORIES["perceptron"],
            subcategory="perceptron",
            labels={"figure": "collapse"},
        ),
        learning=report(
            "results/figures/perceptron/learning_curve.png",
            caption=generated_caption("perceptron.rst"),
            category=CATEGORIES["perceptron"],
            subcategory="perceptron",
            labels={"figure": "learning curve"},
        ),
    params:
        window=PERC["window"],
        upper_fraction=PERC["upper_fraction"],
    log:
        "results/logs/analyse_perceptron.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/analyse_perceptron.py"
