# Solvable linear random-feature models (issue 6; Bahri et al., Bordelon et al.): one exact
# simulation job per (a, b) sweeping t, N and P, then the exponent fits, the figure and the caption.

STAGE_TARGETS["random_features"] = (
    ["results/fits/random_features.json", "results/figures/random_features/bottlenecks.png"] if RF["enabled"] else []
)


rule random_features_sweep:
    """Time, model, data and variance sweeps of one (a, b), every seed (exact GD, closed form)."""
    output:
        "results/runs/random_features/a~{a}_b~{b}.parquet",
    params:
        settings=rf_settings,
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
        rf_runs(),
    output:
        json="results/fits/random_features.json",
        table="results/fits/random_features.parquet",
        caption="results/report/random_features.rst",
        figure=report(
            "results/figures/random_features/bottlenecks.png",
            caption=generated_caption("random_features.rst"),
            category="Solvable models",
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
