from scalinglab.core.scripting import run
from scalinglab.datasets.sources import prepare_file

run(snakemake, prepare_file)
