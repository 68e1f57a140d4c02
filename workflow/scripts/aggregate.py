from scalinglab.core.io import concat_parquet
from scalinglab.core.scripting import run

run(snakemake, concat_parquet)
