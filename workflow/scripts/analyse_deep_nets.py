from scalinglab.core.scripting import run
from scalinglab.deep_nets.stage import analyse_pair

p, wc, out = snakemake.params, snakemake.wildcards, snakemake.output
run(
    snakemake,
    analyse_pair,
    list(snakemake.input),
    model=wc.model,
    dataset=wc.dataset,
    window=list(p.window),
    upper_fraction=p.upper_fraction,
    error=p.error,
    json_path=out.json,
    figures={"curves": out.curves, "collapse": out.collapse, "learning": out.learning},
)
