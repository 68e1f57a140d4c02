from scalinglab.core.scripting import run
from scalinglab.random_features.stage import sweep_pair

run(snakemake, sweep_pair, dict(snakemake.params.settings), threads=snakemake.threads, out_path=snakemake.output[0])
