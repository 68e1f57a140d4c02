from scalinglab.scripting import run
from scalinglab.teacher_student import aggregate

run(snakemake, aggregate, list(snakemake.input), snakemake.output[0])
