from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import fit_and_write

run(snakemake, fit_and_write)
