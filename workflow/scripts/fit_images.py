from scalinglab.core.scripting import run
from scalinglab.images.stage import fit_and_write

run(
    snakemake,
    fit_and_write,
    snakemake.input.table,
    quantiles=list(snakemake.params.quantiles),
    bootstrap=snakemake.params.bootstrap,
    table_out=snakemake.output.table,
    json_out=snakemake.output.json,
    caption_out=snakemake.output.caption,
    dimension_path=snakemake.input.dimension[0] if snakemake.input.dimension else None,
    reference_k=snakemake.params.reference_k,
)
