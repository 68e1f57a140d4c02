from scalinglab.scripting import run
from scalinglab.teacher_student import train_bundle

p = snakemake.params
# read from the config, not a rule param: how often to save changes no result, so it must not rerun jobs
minutes = snakemake.config["engine"]["checkpoint_minutes"]
run(
    snakemake,
    train_bundle,
    snakemake.input.train,
    snakemake.input.test,
    d=p.d,
    width=p.width,
    P=p.P,
    seeds=list(p.seeds),
    schedule=dict(p.schedule),
    n_evals=p.n_evals,
    device=p.device,
    compile=p.compile,
    threads=snakemake.threads,
    out_paths=list(snakemake.output),
    checkpoint=p.checkpoint if minutes > 0 else None,
    checkpoint_every_s=60 * minutes,
)
