# Analysis: aggregate the cells, fit exponents, draw figures.

STAGE_TARGETS["teacher_student"] = (
    [
        "results/fits/teacher_student.parquet",
        "results/figures/teacher_student/loss_vs_n.png",
        "results/figures/teacher_student/dim_vs_d.png",
        "results/figures/teacher_student/learning_curves.png",
    ]
    if TS["enabled"]
    else []
)


rule aggregate_teacher_student:
    """Concatenate every cell's Parquet into one tidy table."""
    input:
        ts_all_cells(),
    output:
        "results/tables/teacher_student.parquet",
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
        dimension=dimension_table,
    output:
        table="results/fits/teacher_student.parquet",
        json="results/fits/teacher_student.json",
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
        dimension=dimension_table,
    output:
        loss=report(
            "results/figures/teacher_student/loss_vs_n.png",
            caption="../report/teacher_student_loss.rst",
            category="Teacher/student",
            labels={"figure": "loss against N"},
        ),
        dim=report(
            "results/figures/teacher_student/dim_vs_d.png",
            caption=generated_caption("teacher_student_fits.rst"),
            category="Teacher/student",
            labels={"figure": "4/alpha against d"},
        ),
        curves=report(
            "results/figures/teacher_student/learning_curves.png",
            caption="../report/teacher_student_curves.rst",
            category="Teacher/student",
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
