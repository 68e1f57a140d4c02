from scalinglab.images_stage import train_bundle
from scalinglab.scripting import run

p = snakemake.params
# read from the config, not a rule param: how often to save changes no result, so it must not rerun jobs
minutes = snakemake.config["engine"]["checkpoint_minutes"]
run(snakemake, train_bundle, snakemake.input[0], dataset=p.dataset, P=p.P, width=p.width, seeds=list(p.seeds),
    epochs=p.epochs, batch=p.batch, lr=p.lr, weight_decay=p.weight_decay, augment=p.augment, device=p.device,
    threads=snakemake.threads, out_paths=list(snakemake.output),
    checkpoint=p.checkpoint if minutes > 0 else None, checkpoint_every_s=60 * minutes)
