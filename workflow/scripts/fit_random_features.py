from scalinglab.core.scripting import run
from scalinglab.random_features.stage import fit_and_plot

out = snakemake.output
run(
    snakemake,
    fit_and_plot,
    list(snakemake.input),
    bootstrap=snakemake.params.bootstrap,
    json_path=out.json,
    table_path=out.table,
    caption_path=out.caption,
    figure_path=out.figure,
)
