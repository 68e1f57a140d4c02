from scalinglab.images_stage import plot_dims
from scalinglab.scripting import run

run(
    snakemake,
    plot_dims,
    snakemake.input.fits,
    path=snakemake.output[0],
    dimension_path=snakemake.input.dimension[0] if snakemake.input.dimension else None,
    reference_k=snakemake.params.reference_k,
)
