from scalinglab.core.scripting import run
from scalinglab.dimension.stage import aggregate_and_plot

run(snakemake, aggregate_and_plot)
