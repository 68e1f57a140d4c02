from scalinglab.core.scripting import run
from scalinglab.dimension.stage import aggregate_and_plot

run(snakemake, aggregate_and_plot, list(snakemake.input), snakemake.output.table, snakemake.output.figure)
