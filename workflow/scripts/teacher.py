from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import make_teacher

run(snakemake, make_teacher)
