from scalinglab.core.scripting import checkpoint_settings, run
from scalinglab.teacher_student.packing import train_pack

run(snakemake, train_pack, threads=snakemake.threads, **checkpoint_settings(snakemake))
