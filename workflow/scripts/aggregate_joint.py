from scalinglab.core.scripting import run
from scalinglab.joint.stage import aggregate

run(snakemake, aggregate, list(snakemake.input), out_path=snakemake.output[0])
