from scalinglab.dimension_stage import aggregate_and_plot
from scalinglab.scripting import run

run(snakemake, aggregate_and_plot, list(snakemake.input), snakemake.output.table, snakemake.output.figure)
