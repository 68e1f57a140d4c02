# Shared by every experiment's rules. The validated config, the wildcard patterns, GPU slots and
# training resources, report captions, and the final targets that the `all` target asks for.
#
# One convention for how settings reach code. The named input, params and output of a rule are the
# keyword arguments of the package function its script calls, by the same names (core/scripting.py);
# params carry config values under their config names. Each experiment has one rule file; the grid
# of its cells and their paths lives in its package (scalinglab/<experiment>/grid.py), and it appends
# its final outputs to STAGE_TARGETS.
import math
import re
import shutil
import sys
from pathlib import Path

from scalinglab.core import preflight
from scalinglab.core.config import canonical, only_named_stages, read_yaml, validate
from scalinglab.core.errors import UserError

try:
    for path in workflow.configfiles:
        read_yaml(path)  # Snakemake's YAML loader keeps the last of two copies of a key: refuse them
    if workflow.overwrite_configfiles:  # a --configfile (preset) replaces the default: it names its stages
        config.update(only_named_stages(config))
    config.update(validate(config))
except UserError as exc:
    # one line, no traceback: say what is wrong and stop before anything runs
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)

# engine.checkpoint_minutes: 0 saves no checkpoints, but a job still resumes from one that an earlier run
# left (say, preempted before the setting changed): an interval of inf hands the job its checkpoint file
# (core.scripting.checkpoint_settings), which it reads, never writes, and removes once its cells are written.
if config["engine"]["checkpoint_minutes"] == 0:
    config["engine"]["checkpoint_minutes"] = math.inf


# One spelling per number: no leading zeros (d~02 would be a second, different cell of d = 2) and
# no zero sizes. Numbers in names are written by core.config.number_name.
NUMBER = r"\d+(\.\d+)?(e[+-]\d+)?"


wildcard_constraints:
    d=r"[1-9]\d*",
    P=r"[1-9]\d*|inf",
    width=r"[1-9]\d*",
    seed=r"0|[1-9]\d*",
    alpha=NUMBER,
    a=NUMBER,
    b=NUMBER,
    dataset=r"[a-z0-9-]+",


def uses_gpu() -> bool:
    """Whether training jobs take a GPU slot: `device: cuda`, or `auto` on a machine with nvidia-smi."""
    if config["device"] == "auto":
        return shutil.which("nvidia-smi") is not None
    return config["device"] == "cuda"


GPU_JOBS = 1 if uses_gpu() else 0
# device: cuda on a machine without a GPU fails in every training job: say so before any runs. Not
# when jobs go to a cluster, whose nodes may have GPUs that the submitting machine lacks.
CLUSTER = any(arg.startswith(("--executor", "--profile", "--workflow-profile")) for arg in sys.argv)
if config["device"] == "cuda" and shutil.which("nvidia-smi") is None and not CLUSTER:
    print("error: config: device: cuda, but this machine has no NVIDIA GPU; use device: auto or cpu", file=sys.stderr)
    sys.exit(1)


def training_resources(mem_mb: int, runtime: int) -> dict:
    """A training rule's resources: its GPU slot, and memory (MB) and runtime (minutes) that grow with
    each retry (a retried job resumes its checkpoint with more of both)."""
    return {
        "gpu": GPU_JOBS,
        "mem_mb": lambda wildcards, attempt: mem_mb * attempt,
        "runtime": lambda wildcards, attempt: runtime * attempt,
    }


def generated_caption(name: str) -> str:
    """Captions written by fit rules (they carry the fitted numbers); absolute, since Snakemake
    resolves relative caption paths against the rule file, not the working directory."""
    return str(Path.cwd() / "results" / "report" / name)


# Each experiment lists its final outputs here (empty when it is off), and also its cells and tables:
# a missing cell or table is then rebuilt, with everything downstream of it, by a plain rerun
# (Snakemake does not rebuild a missing intermediate file whose consumers are up to date). The `all`
# target asks for all of them, so a new experiment touches only its own rule file and config section.
STAGE_TARGETS: dict[str, list[str]] = {}

# The report's categories, numbered so that its menu (sorted by name) shows them in this order:
# the answers first, then the data-manifold experiments, the empirical laws, the implicit-bias ones.
CATEGORIES = {
    "summary": "1. Summary",
    "teacher_student": "2. Teacher/student",
    "dimension": "3. Intrinsic dimension",
    "images": "4. Images",
    "joint": "5. Joint law",
    "random_features": "6. Random features",
    "perceptron": "7. Implicit bias",
    "deep_nets": "7. Implicit bias",
}

# Snakemake has no public flag for "building a report"; its command line says it.
REPORTING = any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


# Folders of files that more than one experiment reads: a target there needs one of them on.
SHARED_FOLDERS = {"resources/teacher_student": ["teacher_student", "joint"]}
# Experiments that work on the data of others, as their rule files say; with those others off they build nothing.
STAGE_READS: dict[str, list[str]] = {}


def check_request() -> None:
    """Before anything is planned (core/preflight.py): the command line's targets and rules must belong to
    experiments that are on and name files of their grids; the grid's existing Parquet files must be whole,
    cells of one experiment must have the same columns, and the torch files the rules make must be whole.
    Then the config's notes. Called at the end of the Snakefile, when every rule is defined."""
    rule_outputs = {rule.name: [str(out) for out in rule.output] for rule in workflow.rules}
    # each rule's torch outputs (teachers, sampled points, prepared datasets) as glob patterns
    resources = {
        re.sub(r"\{[^}]*\}", "*", out): name
        for name, outs in rule_outputs.items()
        for out in outs
        if out.endswith(".pt")
    }
    preflight.check_request(
        sys.argv[1:],
        STAGE_TARGETS,
        config,
        shared=SHARED_FOLDERS,
        rule_outputs=rule_outputs,
        resources=resources,
        reads=STAGE_READS,
    )


def all_targets() -> list[str]:
    stages = STAGE_TARGETS
    if REPORTING:
        # `--report` after a partial run: report the experiments that are complete, not fail on the others
        stages = {name: targets for name, targets in stages.items() if all(Path(t).exists() for t in targets)}
    return [target for targets in stages.values() for target in targets]
