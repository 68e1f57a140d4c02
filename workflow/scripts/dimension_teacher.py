from scalinglab.core.scripting import run
from scalinglab.dimension.stage import estimate_teacher

run(snakemake, estimate_teacher)
