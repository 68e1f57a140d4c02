from scalinglab.core.scripting import checkpoint_settings, run
from scalinglab.deep_nets.stage import train_cell

run(snakemake, train_cell, threads=snakemake.threads, **checkpoint_settings(snakemake))
