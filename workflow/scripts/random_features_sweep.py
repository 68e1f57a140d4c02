from scalinglab.core.scripting import run
from scalinglab.random_features.stage import sweep_pair

run(snakemake, sweep_pair, threads=snakemake.threads)
