from scalinglab.random_features_stage import fit_and_plot
from scalinglab.scripting import run

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
