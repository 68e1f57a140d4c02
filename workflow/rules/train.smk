# Training: one job per bundle = all seeds of one (d, P, width), trained as one ensemble.


rule train_teacher_student:
    """Students [w, n, n, 1] of every seed for one (d, P, n); one Parquet per seed (cell)."""
    input:
        train="resources/teacher_student/data/d~{d}/train_P~{P}.pt",
        test="resources/teacher_student/data/d~{d}/test.pt",
    output:
        ts_cells("{d}", "{P}", "{width}"),
    params:
        d=lambda wc: int(wc.d),
        width=lambda wc: int(wc.width),
        P=lambda wc: wc.P,
        seeds=TS["seeds"],
        schedule=lambda wc: ts_schedule(wc.d),
        n_evals=TS["n_evals"],
        device=config["device"],
        compile=config["engine"]["compile"],
        checkpoint=lambda wc: f"results/checkpoints/teacher_student/d~{wc.d}/P~{wc.P}/width~{wc.width}.pt",
    threads: config["engine"]["threads"]
    retries: 2  # each attempt gets more memory and runtime (resources below), and resumes its checkpoint
    resources:
        gpu=GPU_JOBS,
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    log:
        "results/logs/train_teacher_student/d~{d}/P~{P}/width~{width}.log",
    benchmark:
        "results/benchmarks/train_teacher_student/d~{d}/P~{P}/width~{width}.tsv"
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/train_teacher_student.py"
