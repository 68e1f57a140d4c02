from scalinglab.core.scripting import run
from scalinglab.images.stage import plot_scaling

run(snakemake, plot_scaling)
