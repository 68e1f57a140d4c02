# The teacher/student data-manifold experiment (Sharma & Kaplan 2022; scalinglab/teacher_student/):
# a random teacher network per d, its sampled points, students of many widths trained as one ensemble
# per (d, P, width) bundle, then the fit of 4/alpha against d and the figures.
from scalinglab.teacher_student import grid as ts_grid

TS = config["teacher_student"]

STAGE_TARGETS["teacher_student"] = (
    [
        "results/fits/teacher_student.parquet",
        "results/figures/teacher_student/loss_vs_n.png",
        "results/figures/teacher_student/dim_vs_d.png",
        "results/figures/teacher_student/learning_curves.png",
        "results/tables/teacher_student.parquet",
        *ts_grid.all_cells(TS),
    ]
    if TS["enabled"]
    else []
)


rule teacher:
    """A random teacher network [d, w, 600, 600, 1] (Sharma & Kaplan) for one d."""
    output:
        teacher="resources/teacher_student/teachers/d~{d}.pt",
    params:
        d=lambda wc: int(wc.d),
        embedding_width=TS["embedding_width"],
        teacher_seed=TS["teacher_seed"],
    log:
        "results/logs/teacher/d~{d}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/teacher.py"


rule teacher_train_data:
    """Points sampled from one d's teacher: the training set of one P (for P = inf, the pool students
    stream through); reused as teacher_test_data for the fixed test set, drawn from its own stream."""
    input:
        teacher="resources/teacher_student/teachers/d~{d}.pt",
    output:
        points="resources/teacher_student/data/d~{d}/train_P~{P}.pt",
    params:
        n_points=lambda wc: TS["pool_size"] if wc.P == "inf" else int(wc.P),
        stream=lambda wc: ["train", TS["teacher_seed"], wc.d, wc.P],
    log:
        "results/logs/teacher_data/d~{d}/train_P~{P}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/teacher_data.py"


use rule teacher_train_data as teacher_test_data with:
    output:
        points="resources/teacher_student/data/d~{d}/test.pt",
    params:
        n_points=TS["test_size"],
        stream=lambda wc: ["test", TS["teacher_seed"], wc.d],
    log:
        "results/logs/teacher_data/d~{d}/test.log",


rule train_teacher_student:
    """Students [w, n, n, 1] of every seed for one (d, P, n); one Parquet per seed (cell)."""
    input:
        train="resources/teacher_student/data/d~{d}/train_P~{P}.pt",
        test="resources/teacher_student/data/d~{d}/test.pt",
    output:
        cells=ts_grid.cells(TS, "{d}", "{P}", "{width}"),
    params:
        d=lambda wc: int(wc.d),
        width=lambda wc: int(wc.width),
        P=lambda wc: wc.P,
        seeds=TS["seeds"],
        schedule=lambda wc: ts_grid.schedule(TS, wc.d),
        n_evals=TS["n_evals"],
        device=config["device"],
        compile=config["engine"]["compile"],
        checkpoint=lambda wc: f"results/checkpoints/teacher_student/d~{wc.d}/P~{wc.P}/width~{wc.width}.pt",
    threads: config["engine"]["threads"]
    resources:
        **training_resources(mem_mb=2000, runtime=60),
    log:
        "results/logs/train_teacher_student/d~{d}/P~{P}/width~{width}.log",
    benchmark:
        "results/benchmarks/train_teacher_student/d~{d}/P~{P}/width~{width}.tsv"
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/train_teacher_student.py"


rule aggregate_teacher_student:
    """Concatenate every cell's Parquet into one tidy table."""
    input:
        parts=ts_grid.all_cells(TS),
    output:
        table="results/tables/teacher_student.parquet",
    log:
        "results/logs/aggregate_teacher_student.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/aggregate.py"


rule fit_teacher_student:
    """alpha per (d, P) by least squares and median regression, bootstrap CIs over seeds, 4/alpha vs d."""
    input:
        table="results/tables/teacher_student.parquet",
        dimension=DIMENSION_TABLE,
    output:
        fits_table="results/fits/teacher_student.parquet",
        fits_json="results/fits/teacher_student.json",
        caption="results/report/teacher_student_fits.rst",
    params:
        bootstrap=TS["bootstrap"],
        quantile=TS["quantile"],
        reference_k=DIM["reference_k"],
    log:
        "results/logs/fit_teacher_student.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/fit_teacher_student.py"


rule plot_teacher_student:
    """Loss against N with fitted lines, 4/alpha against d, and learning curves."""
    input:
        table="results/tables/teacher_student.parquet",
        fits="results/fits/teacher_student.parquet",
        dimension=DIMENSION_TABLE,
    output:
        loss=report(
            "results/figures/teacher_student/loss_vs_n.png",
            caption="../report/teacher_student_loss.rst",
            category=CATEGORIES["teacher_student"],
            labels={"figure": "loss against N"},
        ),
        dim=report(
            "results/figures/teacher_student/dim_vs_d.png",
            caption=generated_caption("teacher_student_fits.rst"),
            category=CATEGORIES["teacher_student"],
            labels={"figure": "4/alpha against d"},
        ),
        curves=report(
            "results/figures/teacher_student/learning_curves.png",
            caption="../report/teacher_student_curves.rst",
            category=CATEGORIES["teacher_student"],
            labels={"figure": "learning curves"},
        ),
    params:
        reference_k=DIM["reference_k"],
    log:
        "results/logs/plot_teacher_student.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/plot_teacher_student.py"
