from scalinglab.datasets import prepare
from scalinglab.scripting import run

p = snakemake.params
run(snakemake, prepare, snakemake.wildcards.dataset, p.root, local_dir=p.local_dir, download=p.download)
