from scalinglab.core.scripting import run
from scalinglab.joint.stage import aggregate

run(snakemake, aggregate)
