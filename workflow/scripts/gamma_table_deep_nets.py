from scalinglab.core.scripting import run
from scalinglab.deep_nets.stage import gamma_table

run(snakemake, gamma_table)
