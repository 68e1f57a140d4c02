from scalinglab.core.scripting import run
from scalinglab.images.stage import plot_dims

run(snakemake, plot_dims)
