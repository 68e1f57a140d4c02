from scalinglab.scripting import run
from scalinglab.teacher_student import plot_all

run(snakemake, plot_all, snakemake.input.table, snakemake.input.fits, dict(snakemake.output))
