"""Run the workflow in a scratch directory and read what a dry run would do."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def snakemake(workdir: Path, *args: str, config: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake on the repo's Snakefile in `workdir` with the tiny config (or `config`)."""
    configfile = TINY
    if config is not None:
        configfile = workdir.parent / f"{workdir.name}.config.yaml"  # beside, so workdir holds only outputs
        configfile.write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def planned_jobs(workdir: Path, config: dict | None = None, extra_args: Sequence[str] = ()) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run (with `extra_args`, e.g. --forcerun RULE) plans."""
    out = snakemake(workdir, "-n", "--cores", "1", *extra_args, config=config).stdout
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule |(?:local)?rule )", out):
        match = re.search(r"(?:local)?rule (\w+):", block)
        if not match:
            continue
        wildcards = {}
        found = re.search(r"wildcards: (.*)", block)
        if found:
            wildcards = dict(pair.split("=", 1) for pair in found.group(1).split(", "))
        jobs.append((match.group(1), wildcards))
    return jobs


def tiny_config() -> dict:
    return yaml.safe_load(TINY.read_text())
