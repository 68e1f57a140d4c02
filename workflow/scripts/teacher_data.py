from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import make_dataset

run(snakemake, make_dataset)
