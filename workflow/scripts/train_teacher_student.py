from scalinglab.core.scripting import checkpoint_settings, run
from scalinglab.teacher_student.packing import train_pack

# threads, checkpoints and CUDA graphs change no result: config values, not rule params, so that
# changing them reruns nothing
run(
    snakemake,
    train_pack,
    threads=snakemake.threads,
    cuda_graphs=snakemake.config["engine"]["cuda_graphs"],
    **checkpoint_settings(snakemake),
)
