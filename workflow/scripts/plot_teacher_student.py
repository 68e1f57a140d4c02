from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import plot_all

run(
    snakemake,
    plot_all,
    snakemake.input.table,
    snakemake.input.fits,
    dict(snakemake.output),
    dimension_path=snakemake.input.dimension[0] if snakemake.input.dimension else None,
    reference_k=snakemake.params.reference_k,
)
