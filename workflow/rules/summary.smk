# What the report opens on (scalinglab/report/summary.py): the headline numbers of every experiment that
# is on, against what theory predicts (results/summary.tsv, the first category), the landing text, and
# each experiment's fit table as a report table in its own category.

# input name -> the fit file it reads, for the experiments that are on (the name minus its suffix is the config section)
SUMMARY_INPUTS = {
    name: path
    for name, path in {
        "teacher_student_fits": "results/fits/teacher_student.parquet",
        "dimension_table": "results/tables/dimension.parquet",
        "images_fits": "results/fits/images.parquet",
        "joint_fits": "results/fits/joint.json",
        "random_features_fits": "results/fits/random_features.parquet",
        "perceptron_fits": "results/fits/perceptron.json",
        "deep_nets_fits": "results/fits/deep_nets.json",
    }.items()
    if config[name.rsplit("_", 1)[0]]["enabled"]
}
FIT_TABLES = {name: f"results/report/tables/{name.rsplit('_', 1)[0]}.tsv" for name in SUMMARY_INPUTS}

STAGE_TARGETS["summary"] = ["results/summary.tsv", *FIT_TABLES.values()] if SUMMARY_INPUTS else []


rule summary:
    """Headline numbers of every experiment that ran; the report's landing text; the fit tables as TSV."""
    input:
        **SUMMARY_INPUTS,
    output:
        table=report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category=CATEGORIES["summary"],
            labels={"table": "headline numbers"},
        ),
        landing="results/report/landing.rst",
        fit_tables=[
            report(
                path,
                caption="../report/fit_table.rst",
                category=CATEGORIES[name.rsplit("_", 1)[0]],
                subcategory="fit tables",
                labels={"table": name.rsplit("_", 1)[0].replace("_", " ")},
            )
            for name, path in FIT_TABLES.items()
        ],
    params:
        joint_d=config["joint"]["d"],
        reference_k=config["dimension"]["reference_k"],
    log:
        "results/logs/summary.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/summary.py"
