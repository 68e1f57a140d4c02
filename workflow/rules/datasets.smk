# Image datasets, shared by the images, deep-net and dimension experiments: each converted once into
# one uint8 tensor file (scalinglab/datasets/).
DATASETS = config["datasets"]
# The prepared (uint8 tensor) file of an image dataset, as datasets.sources.dataset_path names it
DATASET_FILE = f"{DATASETS['root']}/{{dataset}}/data.pt"


rule prepare_dataset:
    """An image dataset (torchvision download, a local folder, or a packaged one) as one uint8 tensor file."""
    output:
        data=DATASET_FILE,
    params:
        dataset=lambda wc: wc.dataset,
        local_dir=lambda wc: DATASETS["local_dirs"].get(wc.dataset),
        download=DATASETS["download"],
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    conda:
        "../../envs/scalinglab.yaml"
    script:
        "../scripts/prepare_dataset.py"
