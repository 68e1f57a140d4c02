# Shared set-up: config validation, the grid of cells and bundles, input functions.
import math
import shutil
import sys
from pathlib import Path

from scalinglab.core.config import format_train_size, only_named_stages, validate
from scalinglab.core.errors import UserError

try:
    if workflow.overwrite_configfiles:  # a --configfile (preset) replaces the default: it names its stages
        config.update(only_named_stages(config))
    config.update(validate(config))
except UserError as exc:
    # one line, no traceback: say what is wrong and stop before anything runs
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)

TS = config["teacher_student"]
DIM = config["dimension"]
PERC = config["perceptron"]
DATASETS = config["datasets"]


wildcard_constraints:
    d=r"\d+",
    P=r"\d+|inf",
    width=r"\d+",
    seed=r"\d+",
    alpha=r"[0-9.e+-]+",
    dataset=r"[a-z0-9-]+",


def uses_gpu() -> bool:
    """Whether training jobs take a GPU slot: `device: cuda`, or `auto` on a machine with nvidia-smi."""
    if config["device"] == "auto":
        return shutil.which("nvidia-smi") is not None
    return config["device"] == "cuda"


GPU_JOBS = 1 if uses_gpu() else 0


def canonical(value):
    """Dicts with sorted keys, recursively: Snakemake compares params by their text, and the key
    order of a YAML file is noise that must not trigger reruns."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def ts_schedule(d) -> dict:
    """The training schedule for teacher dimension d: a per-d override, else the default."""
    return canonical(TS["schedule_by_d"].get(int(d), TS["schedule"]))


def ts_train_sizes() -> list[str]:
    return [format_train_size(P) for P in TS["train_sizes"]]


def student_cells(experiment: str, seeds: list, d, P, width) -> list[str]:
    """The cells of one teacher/student bundle: one Parquet per seed (shared by the joint stage)."""
    return expand(
        "results/runs/{experiment}/d~{d}/P~{P}/width~{width}/seed~{seed}.parquet",
        experiment=experiment, d=d, P=P, width=width, seed=seeds,
    )


def ts_cells(d, P, width) -> list[str]:
    return student_cells("teacher_student", TS["seeds"], d, P, width)


def ts_all_cells() -> list[str]:
    return [
        cell
        for d in TS["d"]
        for P in ts_train_sizes()
        for width in TS["widths"]
        for cell in ts_cells(d, P, width)
    ]


def ts_train_points(wildcards) -> int:
    return TS["pool_size"] if wildcards.P == "inf" else int(wildcards.P)


def dataset_file(name: str) -> str:
    """The prepared (uint8 tensor) file of an image dataset; rule prepare_dataset makes it."""
    return f"{DATASETS['root']}/{name}/data.pt"  # datasets.dataset_path (not imported: it loads torch)


def generated_caption(name: str) -> str:
    """Captions written by fit rules (they carry the fitted numbers); absolute, since Snakemake
    resolves relative caption paths against the rule file, not the working directory."""
    return str(Path.cwd() / "results" / "report" / name)


def dimension_files() -> list[str]:
    files = []
    if TS["enabled"]:
        files += expand("results/dimension/teacher_student/d~{d}.parquet", d=TS["d"])
    if IMG["enabled"]:  # the pixels of every image dataset of the image stage
        files += expand("results/dimension/images/{dataset}.parquet", dataset=IMG["datasets"])
    return files


def dimension_table(wildcards=None) -> list[str]:
    """The dimension table as an optional input: [] when the stage is off or has nothing to measure."""
    return ["results/tables/dimension.parquet"] if DIM["enabled"] and dimension_files() else []


def perceptron_runs() -> list[str]:
    return expand("results/runs/perceptron/alpha~{alpha}.parquet", alpha=[f"{a:g}" for a in PERC["alphas"]])


# ---- images stage (workflow/rules/images.smk): cells per (dataset, P, width, seed)
IMG = config["images"]


def img_train_sizes() -> list[str]:
    """P settings as path text: "all" (the whole training split) or an integer."""
    return [str(P) for P in IMG["train_sizes"]]


def img_cells(dataset, P, width) -> list[str]:
    return expand(
        "results/runs/images/dataset~{dataset}/P~{P}/width~{width}/seed~{seed}.parquet",
        dataset=dataset, P=P, width=width, seed=IMG["seeds"],
    )


def img_all_cells() -> list[str]:
    return [
        cell
        for dataset in IMG["datasets"]
        for P in img_train_sizes()
        for width in IMG["widths"]
        for cell in img_cells(dataset, P, width)
    ]


def img_scaling_figures() -> list[str]:
    return expand(
        "results/figures/images/dataset~{dataset}/P~{P}/scaling.png", dataset=IMG["datasets"], P=img_train_sizes()
    )


def img_augment(wildcards) -> str:
    """The augmentation of one dataset: its entry in images.augment (a map), else "auto"."""
    setting = IMG["augment"]
    return setting.get(wildcards.dataset, "auto") if isinstance(setting, dict) else setting


# ---- deep nets (implicit bias in CNN, ResNet, ViT; seed 001): workflow/rules/deepnets.smk ----
DN = config["deep_nets"]


def deep_nets_cells(model, dataset, P) -> list[str]:
    """The cells (one Parquet per seed) of one (model, dataset, P): one training job."""
    return expand(
        "results/runs/deep_nets/model~{model}/dataset~{dataset}/P~{P}/seed~{seed}.parquet",
        model=model, dataset=dataset, P=P, seed=DN["seeds"],
    )


def deep_nets_runs(wildcards) -> list[str]:
    """Every cell of one (model, dataset): all P and seeds, the input of its analysis."""
    return [cell for P in DN["train_sizes"] for cell in deep_nets_cells(wildcards.model, wildcards.dataset, P)]


def deep_nets_fits() -> list[str]:
    return [
        f"results/fits/deep_nets/model~{model}/dataset~{dataset}.json"
        for model in DN["models"]
        for dataset in DN["datasets"]
    ]


def deep_nets_settings(model) -> dict:
    """One family's training settings: the params whose change retrains that family's cells."""
    return canonical(
        {
            "epochs": DN["epochs"], "batch": DN["batch"], "n_logs": DN["n_logs"], "test_size": DN["test_size"],
            "lr": DN["lr"][model], "width": DN["width"][model], "depth": DN["depth"].get(model),
        }
    )


def deep_nets_perceptron_fit() -> list[str]:
    """The perceptron's gammas as an optional input of the gamma table: [] when that stage is off."""
    return ["results/fits/perceptron.json"] if PERC["enabled"] else []


# Each rule file lists its stage's final outputs here (empty when the stage is off); `rule all`
# asks for all of them, so a new stage touches only its own rule file and its config section.
STAGE_TARGETS: dict[str, list[str]] = {}


# Snakemake has no public flag for "building a report"; its command line says it.
REPORTING = any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


def all_targets() -> list[str]:
    stages = {"dimension": dimension_table(), **STAGE_TARGETS}
    if REPORTING:
        # `--report` after a partial run: report the experiments that are complete, not fail on the others
        stages = {name: targets for name, targets in stages.items() if all(Path(t).exists() for t in targets)}
    return [target for targets in stages.values() for target in targets]



# ---- joint stage (issue 6): the widths x P grid of the joint law ----
JOINT = config["joint"]


def joint_cells(d, P, width) -> list[str]:
    return student_cells("joint", JOINT["seeds"], d, P, width)


def joint_all_cells() -> list[str]:
    return [cell for P in JOINT["train_sizes"] for width in JOINT["widths"] for cell in joint_cells(JOINT["d"], P, width)]


def joint_schedule(P) -> dict:
    """OneCycle for `epochs` passes over the P points: samples seen (and compute) grow with P."""
    sched = JOINT["schedule"]
    steps = max(2, math.ceil(sched["epochs"] * int(P) / sched["batch"]))
    extra = {key: sched[key] for key in ("pct_start", "div_factor", "final_div_factor") if key in sched}
    return canonical({"kind": "onecycle", "steps": steps, "batch": sched["batch"], "max_lr": sched["max_lr"], **extra})


# ---- random-feature stage (issue 6): workflow/rules/random_features.smk, one job per (a, b) ----
RF = config["random_features"]


def rf_pair_name(pair: dict) -> str:
    return f"a~{pair['a']:g}_b~{pair['b']:g}"


def rf_runs() -> list[str]:
    names = dict.fromkeys(rf_pair_name(pair) for pair in RF["pairs"])  # a pair listed twice runs once
    return [f"results/runs/random_features/{name}.parquet" for name in names]


def rf_settings(wildcards) -> dict:
    """Everything one (a, b)'s simulation depends on: its params, so a change reruns that pair only."""
    name = f"a~{wildcards.a}_b~{wildcards.b}"
    pair = next(p for p in RF["pairs"] if rf_pair_name(p) == name)
    time = RF["time"]
    return canonical(
        {
            "a": float(pair["a"]), "b": float(pair["b"]),
            "times": pair.get("times", time["window"]), "n_times": time["count"],
            "time_P": pair.get("time_P", time["P"]), "time_M": time["M"],
            "Ns": RF["Ns"], "Ps": RF["Ps"], "variance_N": RF["variance_N"], "variance_Ps": RF["variance_Ps"],
            "feature_ratio": RF["feature_ratio"], "seeds": RF["seeds"], "lr": RF["lr"],
        }
    )
