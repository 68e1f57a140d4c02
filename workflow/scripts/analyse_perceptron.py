from scalinglab.core.scripting import run
from scalinglab.perceptron.stage import analyse_and_plot

out = snakemake.output
run(
    snakemake,
    analyse_and_plot,
    list(snakemake.input),
    window=list(snakemake.params.window),
    upper_fraction=snakemake.params.upper_fraction,
    json_path=out.json,
    caption_path=out.caption,
    figures={"curves": out.curves, "collapse": out.collapse, "learning": out.learning},
)
