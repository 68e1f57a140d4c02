from scalinglab.core.scripting import run
from scalinglab.perceptron.stage import analyse_and_plot

run(snakemake, analyse_and_plot)
