# Data: teacher networks and the points sampled from them; image datasets, converted once.


rule teacher:
    """A random teacher network [d, w, 600, 600, 1] (seed 000) for one d."""
    output:
        "resources/teacher_student/teachers/d~{d}.pt",
    params:
        d=lambda wc: int(wc.d),
        width=TS["embedding_width"],
        seed=TS["teacher_seed"],
    log:
        "results/logs/teacher/d~{d}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/teacher.py"


rule teacher_train_data:
    """The training points of one (d, P); for P = inf, the pool that students stream through."""
    input:
        teacher="resources/teacher_student/teachers/d~{d}.pt",
    output:
        "resources/teacher_student/data/d~{d}/train_P~{P}.pt",
    params:
        n_points=ts_train_points,
        stream=lambda wc: ["train", TS["teacher_seed"], wc.d, wc.P],
    log:
        "results/logs/teacher_data/d~{d}/train_P~{P}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/teacher_data.py"


rule teacher_test_data:
    """A fixed test set of one d, drawn independently of every training set."""
    input:
        teacher="resources/teacher_student/teachers/d~{d}.pt",
    output:
        "resources/teacher_student/data/d~{d}/test.pt",
    params:
        n_points=TS["test_size"],
        stream=lambda wc: ["test", TS["teacher_seed"], wc.d],
    log:
        "results/logs/teacher_data/d~{d}/test.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/teacher_data.py"


rule prepare_dataset:
    """An image dataset (torchvision download, a local folder, or a packaged one) as one uint8 tensor file."""
    output:
        dataset_file("{dataset}"),
    params:
        root=lambda wc, output: Path(output[0]).parent.parent,
        local_dir=lambda wc: DATASETS["local_dirs"].get(wc.dataset),
        download=DATASETS["download"],
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/prepare_dataset.py"
