from scalinglab.core.scripting import checkpoint_settings, run
from scalinglab.images.stage import train_bundle

p = snakemake.params
run(
    snakemake,
    train_bundle,
    snakemake.input[0],
    dataset=p.dataset,
    P=p.P,
    width=p.width,
    seeds=list(p.seeds),
    epochs=p.epochs,
    batch=p.batch,
    lr=p.lr,
    weight_decay=p.weight_decay,
    augment=p.augment,
    device=p.device,
    threads=snakemake.threads,
    out_paths=list(snakemake.output),
    **checkpoint_settings(snakemake),
)
