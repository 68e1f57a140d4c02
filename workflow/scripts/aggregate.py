from scalinglab.io import concat_parquet
from scalinglab.scripting import run

run(snakemake, concat_parquet, list(snakemake.input), snakemake.output[0])
