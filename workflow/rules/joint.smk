# Joint law L(N, P) (issue 6): teacher/student cells on a widths x P grid, each trained for a fixed
# number of passes over its P points, so compute C = 6 N D grows with P; joint fits, the
# compute-optimal frontier, an isoFLOP view. Reuses the teacher and data rules of data.smk.

STAGE_TARGETS["joint"] = (
    ["results/fits/joint.json", "results/figures/joint/frontier.png", "results/figures/joint/isoflop.png"]
    if JOINT["enabled"]
    else []
)


rule train_joint:
    """Students of every seed for one (d, P, width) of the joint grid, trained as one ensemble."""
    input:
        train="resources/teacher_student/data/d~{d}/train_P~{P}.pt",
        test="resources/teacher_student/data/d~{d}/test.pt",
    output:
        joint_cells("{d}", "{P}", "{width}"),
    params:
        d=lambda wc: int(wc.d),
        width=lambda wc: int(wc.width),
        P=lambda wc: wc.P,
        seeds=JOINT["seeds"],
        schedule=lambda wc: joint_schedule(wc.P),
        n_evals=JOINT["n_evals"],
        device=config["device"],
        compile=config["engine"]["compile"],
        checkpoint=lambda wc: f"results/checkpoints/joint/d~{wc.d}/P~{wc.P}/width~{wc.width}.pt",
    threads: config["engine"]["threads"]
    retries: 2  # each attempt gets more memory and runtime, and resumes its checkpoint
    resources:
        gpu=GPU_JOBS,
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    log:
        "results/logs/train_joint/d~{d}/P~{P}/width~{width}.log",
    benchmark:
        "results/benchmarks/train_joint/d~{d}/P~{P}/width~{width}.tsv"
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/train_teacher_student.py"  # the same bundle training, on the joint grid


rule aggregate_joint:
    """All joint cells in one table, with C = 6 N D per logged step."""
    input:
        joint_all_cells(),
    output:
        "results/tables/joint.parquet",
    log:
        "results/logs/aggregate_joint.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/aggregate_joint.py"


rule fit_joint:
    """Joint law by every method (bootstrap over seeds, extrapolation error), frontier, figures, caption."""
    input:
        "results/tables/joint.parquet",
    output:
        table="results/fits/joint.parquet",
        json="results/fits/joint.json",
        caption="results/report/joint.rst",
        loss_vs_n=report(
            "results/figures/joint/loss_vs_n.png",
            caption=generated_caption("joint.rst"),
            category="Joint law",
            labels={"figure": "loss against N per P"},
        ),
        loss_vs_p=report(
            "results/figures/joint/loss_vs_p.png",
            caption=generated_caption("joint.rst"),
            category="Joint law",
            labels={"figure": "loss against P per N"},
        ),
        frontier=report(
            "results/figures/joint/frontier.png",
            caption=generated_caption("joint.rst"),
            category="Joint law",
            labels={"figure": "compute-optimal frontier"},
        ),
        isoflop=report(
            "results/figures/joint/isoflop.png",
            caption=generated_caption("joint.rst"),
            category="Joint law",
            labels={"figure": "isoFLOP"},
        ),
    params:
        methods=JOINT["methods"],
        bootstrap=JOINT["bootstrap"],
    log:
        "results/logs/fit_joint.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/fit_joint.py"
