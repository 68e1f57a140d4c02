from scalinglab.core.scripting import run
from scalinglab.perceptron.stage import sweep_alpha

run(snakemake, sweep_alpha, threads=snakemake.threads)
