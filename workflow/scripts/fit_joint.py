from scalinglab.joint_stage import fit_and_plot
from scalinglab.scripting import run

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
