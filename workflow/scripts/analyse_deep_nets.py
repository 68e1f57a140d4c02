from scalinglab.core.scripting import run
from scalinglab.deep_nets.stage import analyse_pair

run(snakemake, analyse_pair)
