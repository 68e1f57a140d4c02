from scalinglab.core.scripting import checkpoint_settings, run
from scalinglab.images.stage import train_bundle

run(snakemake, train_bundle, threads=snakemake.threads, **checkpoint_settings(snakemake))
