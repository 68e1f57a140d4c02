from scalinglab.core.scripting import run
from scalinglab.teacher_student.stage import fit_and_write

run(
    snakemake,
    fit_and_write,
    snakemake.input.table,
    dimension_path=snakemake.input.dimension[0] if snakemake.input.dimension else None,
    table_path=snakemake.output.table,
    json_path=snakemake.output.json,
    caption_path=snakemake.output.caption,
    bootstrap=snakemake.params.bootstrap,
    quantile=snakemake.params.quantile,
    reference_k=snakemake.params.reference_k,
)
