from scalinglab.core.scripting import checkpoint_settings, run
from scalinglab.deep_nets.stage import train_cell

p, wc = snakemake.params, snakemake.wildcards
run(
    snakemake,
    train_cell,
    snakemake.input[0],
    dataset=wc.dataset,
    model=wc.model,
    P=p.P,
    seeds=list(p.seeds),
    settings=dict(p.settings),
    device=p.device,
    threads=snakemake.threads,
    out_paths=list(snakemake.output),
    **checkpoint_settings(snakemake),
)
