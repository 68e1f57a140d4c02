from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import make_teacher

run(snakemake, make_teacher, snakemake.params.d, snakemake.params.width, snakemake.params.seed, snakemake.output[0])
