# The joint law L(N, P) (scalinglab/joint/, fits in scalinglab/laws/joint/): teacher/student cells on
# a widths x P grid, each trained for a fixed number of passes over its P points, so compute
# C = 6 N D grows with P; joint fits, the compute-optimal frontier, an isoFLOP view. Its training
# rule is the teacher/student one, reused; so are the teacher and data rules.
from scalinglab.joint import grid as joint_grid

JOINT = config["joint"]

STAGE_TARGETS["joint"] = (
    [
        "results/fits/joint.json",
        "results/figures/joint/frontier.png",
        "results/figures/joint/isoflop.png",
        "results/tables/joint.parquet",
        *joint_grid.all_cells(JOINT),
    ]
    if JOINT["enabled"]
    else []
)


JOINT_JOB = ts_grid.job_path(JOINT["pack"])


use rule train_teacher_student as train_joint with:
    input:
        train=lambda wc: [f"resources/teacher_student/data/d~{JOINT['d']}/train_P~{wc.P}.pt"],
        test=[f"resources/teacher_student/data/d~{JOINT['d']}/test.pt"],
    output:
        cells=ts_grid.job_cells(
            JOINT, [JOINT["d"]], lambda d, P, w: joint_grid.cells(JOINT, d, P, w), "{d}", "{P}", "{width}"
        ),
    params:
        bundles=lambda wc: ts_grid.job_bundles(JOINT, [JOINT["d"]], wc.get("d"), wc.get("width")),
        seeds=JOINT["seeds"],
        schedules=lambda wc: {JOINT["d"]: joint_grid.schedule(JOINT, wc.P)},
        n_evals=JOINT["n_evals"],
        lr_by_width={},
        checkpoint=lambda wc: f"results/checkpoints/joint/{JOINT_JOB.format(**wc)}.pt",
    threads: ts_grid.job_threads(JOINT, config["engine"]["threads"])
    log:
        f"results/logs/train_joint/{JOINT_JOB}.log",
    benchmark:
        f"results/benchmarks/train_joint/{JOINT_JOB}.tsv"


rule aggregate_joint:
    """All joint cells in one table, with C = 6 N D per logged step."""
    input:
        parts=joint_grid.all_cells(JOINT),
    output:
        table="results/tables/joint.parquet",
    log:
        "results/logs/aggregate_joint.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/aggregate_joint.py"


rule fit_joint:
    """Joint law by every method (bootstrap over seeds, extrapolation error), frontier, figures, caption."""
    input:
        table="results/tables/joint.parquet",
    output:
        fits_table="results/fits/joint.parquet",
        fits_json="results/fits/joint.json",
        caption="results/report/joint.rst",
        loss_vs_n=report(
            "results/figures/joint/loss_vs_n.png",
            caption=generated_caption("joint.rst"),
            category=CATEGORIES["joint"],
            subcategory="figures",
            labels={"figure": "loss against N per P"},
        ),
        loss_vs_p=report(
            "results/figures/joint/loss_vs_p.png",
            caption=generated_caption("joint.rst"),
            category=CATEGORIES["joint"],
            subcategory="figures",
            labels={"figure": "loss against P per N"},
        ),
        frontier=report(
            "results/figures/joint/frontier.png",
            caption=generated_caption("joint.rst"),
            category=CATEGORIES["joint"],
            subcategory="figures",
            labels={"figure": "compute-optimal frontier"},
        ),
        isoflop=report(
            "results/figures/joint/isoflop.png",
            caption=generated_caption("joint.rst"),
            category=CATEGORIES["joint"],
            subcategory="figures",
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
