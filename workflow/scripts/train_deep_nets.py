from scalinglab.deepnets_stage import train_cell
from scalinglab.scripting import run

p, wc = snakemake.params, snakemake.wildcards
# read from the config, not a rule param: how often to save changes no result, so it must not rerun jobs
minutes = snakemake.config["engine"]["checkpoint_minutes"]
run(snakemake, train_cell, snakemake.input[0], dataset=wc.dataset, model=wc.model, P=p.P, seeds=list(p.seeds),
    settings=dict(p.settings), device=p.device, threads=snakemake.threads, out_paths=list(snakemake.output),
    checkpoint=p.checkpoint if minutes > 0 else None, checkpoint_every_s=60 * minutes)
