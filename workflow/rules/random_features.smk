# Solvable linear random-feature models (Bahri et al. 2021; Bordelon et al. 2024;
# scalinglab/random_features/): one exact simulation job per (a, b) sweeping t, N and P, then the
# exponent fits, the figure and the caption.
from scalinglab.random_features import grid as rf_grid

RF = config["random_features"]

STAGE_TARGETS["random_features"] = (
    ["results/fits/random_features.json", "results/figures/random_features/bottlenecks.png", *rf_grid.runs(RF)]
    if RF["enabled"]
    else []
)


rule random_features_sweep:
    """Time, model, data and variance sweeps of one (a, b), every seed (exact GD, closed form)."""
    output:
        sweep="results/runs/random_features/a~{a}_b~{b}.parquet",
    params:
        a=lambda wc: rf_grid.pair(RF, wc.a, wc.b)["a"],
        b=lambda wc: rf_grid.pair(RF, wc.a, wc.b)["b"],
        times=lambda wc: rf_grid.pair(RF, wc.a, wc.b)["times"],
        time_P=lambda wc: rf_grid.pair(RF, wc.a, wc.b)["time_P"],
        time_count=RF["time"]["count"],
        time_M=RF["time"]["M"],
        Ns=RF["Ns"],
        Ps=RF["Ps"],
        variance_N=RF["variance_N"],
        variance_Ps=RF["variance_Ps"],
        feature_ratio=RF["feature_ratio"],
        seeds=canonical(RF["seeds"]),
        lr=RF["lr"],
    wildcard_constraints:
        a=r"[0-9.]+",
        b=r"[0-9.]+",
    threads: 1
    log:
        "results/logs/random_features_sweep/a~{a}_b~{b}.log",
    benchmark:
        "results/benchmarks/random_features_sweep/a~{a}_b~{b}.tsv"
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/random_features_sweep.py"


rule fit_random_features:
    """Fitted against theory exponents of every (a, b) and sweep; the figure and the report caption."""
    input:
        sweeps=rf_grid.runs(RF),
    output:
        fits_json="results/fits/random_features.json",
        fits_table="results/fits/random_features.parquet",
        caption="results/report/random_features.rst",
        figure=report(
            "results/figures/random_features/bottlenecks.png",
            caption=generated_caption("random_features.rst"),
            category=CATEGORIES["random_features"],
            subcategory="figures",
            labels={"figure": "random-feature bottlenecks"},
        ),
    params:
        bootstrap=RF["bootstrap"],
    log:
        "results/logs/fit_random_features.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/fit_random_features.py"
