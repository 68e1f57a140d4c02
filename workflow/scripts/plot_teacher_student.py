from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import plot_all

run(snakemake, plot_all)
