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


# A training job's grain (teacher_student.pack): one bundle, every width of one (d, P), or every d and
# width of one P; its wildcards are those its grain names. A packed job runs its width groups in as
# many processes as it gets threads (teacher_student.workers, capped by --cores; one bundle: engine.threads).
TS_JOB = ts_grid.job_path(TS["pack"])
TS_THREADS = ts_grid.job_threads(TS, config["engine"]["threads"])


rule train_teacher_student:
    """Students [w, n, n, 1] of every seed of the job's bundles, one ensemble per width group; one
    Parquet per seed (cell)."""
    input:
        train=lambda wc: [
            f"resources/teacher_student/data/d~{d}/train_P~{wc.P}.pt"
            for d in dict.fromkeys(d for d, _ in ts_grid.job_bundles(TS, TS["d"], wc.get("d"), wc.get("width")))
        ],
        test=lambda wc: [
            f"resources/teacher_student/data/d~{d}/test.pt"
            for d in dict.fromkeys(d for d, _ in ts_grid.job_bundles(TS, TS["d"], wc.get("d"), wc.get("width")))
        ],
    output:
        cells=ts_grid.job_cells(TS, TS["d"], lambda d, P, w: ts_grid.cells(TS, d, P, w), "{d}", "{P}", "{width}"),
    params:
        bundles=lambda wc: ts_grid.job_bundles(TS, TS["d"], wc.get("d"), wc.get("width")),
        P=lambda wc: wc.P,
        seeds=TS["seeds"],
        schedules=lambda wc: {
            d: ts_grid.schedule(TS, d) for d, _ in ts_grid.job_bundles(TS, TS["d"], wc.get("d"), wc.get("width"))
        },
        n_evals=TS["n_evals"],
        lr_by_width=TS["lr_by_width"],
        device=config["device"],
        compile=config["engine"]["compile"],
        checkpoint=lambda wc: f"results/checkpoints/teacher_student/{TS_JOB.format(**wc)}.pt",
    threads: TS_THREADS
    resources:
        **training_resources(mem_mb=2000, runtime=60),
    log:
        f"results/logs/train_teacher_student/{TS_JOB}.log",
    benchmark:
        f"results/benchmarks/train_teacher_student/{TS_JOB}.tsv"
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
        convergence=TS["convergence"],
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
            subcategory="figures",
            labels={"figure": "loss against N"},
        ),
        dim=report(
            "results/figures/teacher_student/dim_vs_d.png",
            caption=generated_caption("teacher_student_fits.rst"),
            category=CATEGORIES["teacher_student"],
            subcategory="figures",
            labels={"figure": "4/alpha against d"},
        ),
        curves=report(
            "results/figures/teacher_student/learning_curves.png",
            caption="../report/teacher_student_curves.rst",
            category=CATEGORIES["teacher_student"],
            subcategory="figures",
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
