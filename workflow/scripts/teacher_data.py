from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import make_dataset

run(
    snakemake,
    make_dataset,
    snakemake.input.teacher,
    snakemake.params.n_points,
    tuple(snakemake.params.stream),
    snakemake.output[0],
)
