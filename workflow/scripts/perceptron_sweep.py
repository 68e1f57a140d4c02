from scalinglab.core.scripting import run
from scalinglab.perceptron.stage import sweep_alpha

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
