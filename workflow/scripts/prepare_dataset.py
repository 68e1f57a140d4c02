from scalinglab.core.scripting import run
from scalinglab.datasets.prepare import prepare

p = snakemake.params
run(snakemake, prepare, snakemake.wildcards.dataset, p.root, local_dir=p.local_dir, download=p.download)
