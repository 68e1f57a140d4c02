from scalinglab.random_features_stage import sweep_pair
from scalinglab.scripting import run

run(snakemake, sweep_pair, dict(snakemake.params.settings), threads=snakemake.threads, out_path=snakemake.output[0])
