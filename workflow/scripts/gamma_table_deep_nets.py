from scalinglab.core.scripting import run
from scalinglab.deep_nets.stage import gamma_table

inp, out = snakemake.input, snakemake.output
run(
    snakemake,
    gamma_table,
    list(inp.fits),
    perceptron_json=inp.perceptron[0] if len(inp.perceptron) else None,
    parquet_path=out.parquet,
    json_path=out.json,
    caption_path=out.caption,
    figure_path=out.figure,
)
