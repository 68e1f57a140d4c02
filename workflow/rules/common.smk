# Shared by every experiment's rules. The validated config, the wildcard patterns, GPU slots and
# training resources, report captions, and the final targets that the `all` target asks for.
#
# One convention for how settings reach code. The named input, params and output of a rule are the
# keyword arguments of the package function its script calls, by the same names (core/scripting.py);
# params carry config values under their config names. Each experiment has one rule file; the grid
# of its cells and their paths lives in its package (scalinglab/<experiment>/grid.py), and it appends
# its final outputs to STAGE_TARGETS.
import shutil
import sys
from pathlib import Path

from scalinglab.core.config import canonical, only_named_stages, validate
from scalinglab.core.errors import UserError

try:
    if workflow.overwrite_configfiles:  # a --configfile (preset) replaces the default: it names its stages
        config.update(only_named_stages(config))
    config.update(validate(config))
except UserError as exc:
    # one line, no traceback: say what is wrong and stop before anything runs
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)


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


# Each experiment lists its final outputs here (empty when it is off) and the `all` target asks for
# all of them, so a new experiment touches only its own rule file and config section.
STAGE_TARGETS: dict[str, list[str]] = {}

# Snakemake has no public flag for "building a report"; its command line says it.
REPORTING = any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv)


def all_targets() -> list[str]:
    stages = STAGE_TARGETS
    if REPORTING:
        # `--report` after a partial run: report the experiments that are complete, not fail on the others
        stages = {name: targets for name, targets in stages.items() if all(Path(t).exists() for t in targets)}
    return [target for targets in stages.values() for target in targets]
