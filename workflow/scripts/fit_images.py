from scalinglab.core.scripting import run
from scalinglab.images.stage import fit_and_write

run(snakemake, fit_and_write)
