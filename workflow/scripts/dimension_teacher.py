from scalinglab.core.scripting import run
from scalinglab.dimension.stage import estimate_teacher

p = snakemake.params
run(
    snakemake,
    estimate_teacher,
    snakemake.input[0],
    d=p.d,
    estimators=list(p.estimators),
    ks=list(p.ks),
    subsample=p.subsample,
    bootstrap=p.bootstrap,
    seed=p.seed,
    mle_unbiased=p.mle_unbiased,
    out_path=snakemake.output[0],
)
