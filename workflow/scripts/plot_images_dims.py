from scalinglab.core.scripting import run
from scalinglab.images.stage import plot_dims

run(
    snakemake,
    plot_dims,
    snakemake.input.fits,
    path=snakemake.output[0],
    dimension_path=snakemake.input.dimension[0] if snakemake.input.dimension else None,
    reference_k=snakemake.params.reference_k,
)
