from scalinglab.joint_stage import aggregate
from scalinglab.scripting import run

run(snakemake, aggregate, list(snakemake.input), out_path=snakemake.output[0])
