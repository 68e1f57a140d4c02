from scalinglab.perceptron_stage import sweep_alpha
from scalinglab.scripting import run

p = snakemake.params
run(
    snakemake,
    sweep_alpha,
    N=p.N,
    alpha=p.alpha,
    seeds=list(p.seeds),
    lambdas=dict(p.lambdas),
    threads=snakemake.threads,
    out_path=snakemake.output[0],
)
