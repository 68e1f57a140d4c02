# Shared set-up: config validation, the grid of cells and bundles, input functions.
import math
import shutil
import sys
from pathlib import Path

from scalinglab.config import format_train_size, validate
from scalinglab.errors import UserError

try:
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


def ts_cells(d, P, width) -> list[str]:
    return expand(
        "results/runs/teacher_student/d~{d}/P~{P}/width~{width}/seed~{seed}.parquet",
        d=d, P=P, width=width, seed=TS["seeds"],
    )


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
    return f"{DATASETS['root']}/{name}/data.pt"


def generated_caption(name: str) -> str:
    """Captions written by fit rules (they carry the fitted numbers); absolute, since Snakemake
    resolves relative caption paths against the rule file, not the working directory."""
    return str(Path.cwd() / "results" / "report" / name)


def dimension_files() -> list[str]:
    files = []
    if TS["enabled"]:
        files += expand("results/dimension/teacher_student/d~{d}.parquet", d=TS["d"])
    return files


def dimension_table(wildcards=None) -> list[str]:
    """The dimension table as an optional input: [] when the stage is off or has nothing to measure."""
    return ["results/tables/dimension.parquet"] if DIM["enabled"] and dimension_files() else []


def perceptron_runs() -> list[str]:
    return expand("results/runs/perceptron/alpha~{alpha}.parquet", alpha=[f"{a:g}" for a in PERC["alphas"]])


# Each rule file lists its stage's final outputs here (empty when the stage is off); `rule all`
# asks for all of them, so a new stage touches only its own rule file and its config section.
STAGE_TARGETS: dict[str, list[str]] = {}


def all_targets() -> list[str]:
    return dimension_table() + [target for targets in STAGE_TARGETS.values() for target in targets]
