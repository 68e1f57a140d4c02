from scalinglab.core.scripting import run
from scalinglab.joint.stage import fit_and_plot

out = snakemake.output
run(
    snakemake,
    fit_and_plot,
    snakemake.input[0],
    methods=list(snakemake.params.methods),
    bootstrap=snakemake.params.bootstrap,
    fits_path=out.table,
    json_path=out.json,
    caption_path=out.caption,
    figures={"loss_vs_n": out.loss_vs_n, "loss_vs_p": out.loss_vs_p, "frontier": out.frontier, "isoflop": out.isoflop},
)
