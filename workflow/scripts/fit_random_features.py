from scalinglab.core.scripting import run
from scalinglab.random_features.stage import fit_and_plot

run(snakemake, fit_and_plot)
