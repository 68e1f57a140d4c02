from scalinglab.core.scripting import run
from scalinglab.images.stage import plot_scaling

run(
    snakemake,
    plot_scaling,
    snakemake.input.table,
    snakemake.input.fits,
    dataset=snakemake.wildcards.dataset,
    P=snakemake.wildcards.P,
    path=snakemake.output[0],
)
