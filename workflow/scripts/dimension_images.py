from scalinglab.core.scripting import run
from scalinglab.dimension.stage import estimate_images

run(snakemake, estimate_images)
