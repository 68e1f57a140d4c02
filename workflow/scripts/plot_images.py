from scalinglab.images_stage import plot_scaling
from scalinglab.scripting import run

run(
    snakemake,
    plot_scaling,
    snakemake.input.table,
    snakemake.input.fits,
    dataset=snakemake.wildcards.dataset,
    P=snakemake.wildcards.P,
    path=snakemake.output[0],
)
