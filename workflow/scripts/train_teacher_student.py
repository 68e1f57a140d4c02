from scalinglab.core.scripting import checkpoint_settings, run
from scalinglab.teacher_student.stage import train_bundle

p = snakemake.params
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
    **checkpoint_settings(snakemake),
)
