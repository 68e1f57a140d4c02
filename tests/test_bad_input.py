"""Malformed input, through the real entry points: each case exits non-zero with exactly one line on
stderr, starting with "error:" (the CLI prefixes its command name, as argparse does:
"scalinglab fit: error: ..."), no traceback, and no new file.

Config cases go through `snakemake -n` on the real Snakefile (they extend tests/test_config.py's 16
schema cases: other keys, other kinds of mistake, and contradictions between keys); table cases through
`scalinglab <command>`; dataset cases through the prepare_dataset rule and sources.prepare.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workflow_helpers import snakemake, tiny_config

from scalinglab.cli.main import main
from scalinglab.core.errors import UserError
from scalinglab.datasets import sources

ONE_LINE = re.compile(r"^(scalinglab [a-z-]+: )?error: \S")


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_one_line_error(returncode: int, stdout: str, stderr: str, expect: str) -> str:
    assert returncode != 0
    assert "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert ONE_LINE.match(lines[0]), lines[0]
    assert expect in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- configs, through snakemake -n


def tiny_with(section: str, **values) -> dict:
    config = tiny_config()
    config.setdefault(section, {}).update(values)
    return config


CONFIGS = {
    "wrong type: seeds as a string": (
        tiny_with("teacher_student", seeds="0,1"),
        "teacher_student.seeds: '0,1' is not of type 'array'",
    ),
    "wrong type: a bool for an integer": (
        tiny_with("teacher_student", bootstrap=True),
        "teacher_student.bootstrap: True is not of type 'integer'",
    ),
    "wrong type: a section as a list": (
        {**tiny_config(), "dimension": [5, 10]},
        "dimension: [5, 10] is not of type 'object'",
    ),
    "NaN in a number (.nan)": (
        tiny_with("teacher_student", quantile=math.nan),
        "teacher_student.quantile: nan is not a finite number",
    ),
    "infinite learning rate": (
        tiny_with("teacher_student", schedule={"kind": "onecycle", "steps": 60, "batch": 50, "max_lr": math.inf}),
        "teacher_student.schedule.max_lr: inf is not a finite number",
    ),
    "unknown nested key": (tiny_with("dimension", kss=[5]), "unknown key dimension.kss"),
    "empty grid: alphas": (tiny_with("perceptron", alphas=[]), "perceptron.alphas"),
    "duplicate grid values": (
        tiny_with("teacher_student", widths=[8, 8]),
        "teacher_student.widths: [8, 8] has non-unique elements",
    ),
    "contradiction: reference_k not among ks": (
        tiny_with("dimension", reference_k=50),
        "dimension.reference_k: 50 is not one of dimension.ks",
    ),
    "contradiction: lambda grid low above high": (
        tiny_with("perceptron", lambdas={"low": 2.0, "high": 0.5, "count": 5}),
        "perceptron.lambdas: low must be below high",
    ),
    "contradiction: window reversed": (
        tiny_with("perceptron", window=[0.2, 0.02]),
        "perceptron.window: [0.2, 0.02] must be [low, high]",
    ),
    # whole-number floats in integer grids: seed~0.0 would be another student than seed~0
    "a float seed": (tiny_with("teacher_student", seeds=[0.0, 1.0]), "teacher_student.seeds[0]: 0.0 is not an integer"),
    "a float width": (
        tiny_with("teacher_student", widths=[4.0, 6]),
        "teacher_student.widths[0]: 4.0 is not an integer",
    ),
    "a float d": (tiny_with("teacher_student", d=[2, 3.0]), "teacher_student.d[1]: 3.0 is not an integer"),
    "a float training-set size": (
        tiny_with("joint", train_sizes=[100.0, 200, 400]),
        "joint.train_sizes[0]: 100.0 is not an integer",
    ),
    "a float deep-net P": (
        tiny_with("deep_nets", train_sizes=[20, 40.0, 80]),
        "deep_nets.train_sizes[1]: 40.0 is not an integer",
    ),
    "P = alpha N below one example": (
        tiny_with("perceptron", alphas=[0.001, 4]),
        "perceptron.alphas: alpha = 0.001 gives P = alpha N < 1 example at N = 100",
    ),
    "more neighbours than points": (
        tiny_with("dimension", ks=[5, 10, 20, 5000]),
        "dimension.ks: k = 5000 needs more than k points, but dimension.subsample is 2000",
    ),
    "a brace in the datasets root": (
        {**tiny_config(), "datasets": {"root": "data/{x}"}},
        "datasets.root: 'data/{x}' contains a brace",
    ),
    "contradiction: schedule for a d not in the grid": (
        tiny_with("teacher_student", schedule_by_d={7: {"kind": "onecycle", "steps": 9, "batch": 2, "max_lr": 0.1}}),
        "teacher_student.schedule_by_d: d=[7] not in teacher_student.d",
    ),
}


def snakemake_dry_run(config: dict, folder: Path) -> tuple[subprocess.CompletedProcess, Path]:
    workdir = folder / "run"
    workdir.mkdir(parents=True)
    return snakemake(workdir, "-n", "--cores", "1", config=config, check=False), workdir


@pytest.fixture(scope="module")
def config_runs(tmp_path_factory):
    """All config cases' dry runs, three at a time (each is a Snakemake start-up, seconds of CPU)."""
    base = tmp_path_factory.mktemp("configs")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            case: pool.submit(snakemake_dry_run, config, base / f"case{i}")
            for i, (case, (config, _)) in enumerate(CONFIGS.items())
        }
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_config_through_snakemake(case, config_runs):
    result, workdir = config_runs[case]
    line = assert_one_line_error(result.returncode, result.stdout, result.stderr, CONFIGS[case][1])
    assert line.startswith("error: config: ")
    assert files_under(workdir) == set()  # not even .snakemake/


# ---------------------------------------------------------------- tables, through the CLI


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Well-formed tables and damaged copies of them."""
    folder = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    rows = [
        {"d": d, "N": n, "seed": s, "step": step, "test_loss": n**-0.5 * (1 + 0.1 * rng.random()), "P": 100 * n}
        for d in (2, 3)
        for n in (10, 20, 40, 80)
        for s in (0, 1)
        for step in (1, 2)
    ]
    good = pd.DataFrame(rows)
    good.to_parquet(folder / "runs.parquet")
    data = (folder / "runs.parquet").read_bytes()
    (folder / "truncated.parquet").write_bytes(data[: len(data) // 2])
    nan = good.copy()
    nan.loc[3, "test_loss"] = np.nan
    nan.to_parquet(folder / "nan.parquet")
    zero = good.copy()
    zero.loc[3, "N"] = 0
    zero.to_parquet(folder / "zero_size.parquet")
    text = good.astype({"test_loss": str})
    text.loc[0, "test_loss"] = "diverged"
    text.to_csv(folder / "text_loss.csv", index=False)
    (folder / "empty.csv").write_text("")
    points = rng.normal(size=(300, 3))
    np.save(folder / "points.npy", points)
    data = (folder / "points.npy").read_bytes()
    (folder / "truncated.npy").write_bytes(data[: len(data) // 2])
    frame = pd.DataFrame(points, columns=["a", "b", "c"])
    frame.loc[5, "b"] = np.nan
    frame.to_parquet(folder / "points_nan.parquet")
    pd.DataFrame({"name": ["x", "y", "z"]}).to_csv(folder / "names.csv", index=False)
    bias = pd.DataFrame({"P": [100, 200, 400] * 4, "seed": [0] * 12, "norm": np.linspace(1, 5, 12), "error": np.nan})
    bias.to_parquet(folder / "bias_all_nan.parquet")
    logs = folder / "tb" / "run1"
    logs.mkdir(parents=True)
    (logs / "events.out.tfevents.1700000000.host").write_bytes(b"\x00\x01garbage")
    return folder


CLI_CASES = {
    "fit: non-existent path": (["fit", "missing.parquet", "--x", "N", "--y", "test_loss"], "no such file"),
    "fit: truncated Parquet": (["fit", "truncated.parquet", "--x", "N", "--y", "test_loss"], "truncated or damaged"),
    "fit: missing column": (["fit", "runs.parquet", "--x", "width", "--y", "test_loss"], "missing column(s) width"),
    "fit: NaN values": (["fit", "nan.parquet", "--x", "N", "--y", "test_loss", "--group", "d"], "NaN/inf value(s)"),
    "fit: a size of zero": (["fit", "zero_size.parquet", "--x", "N", "--y", "test_loss", "--group", "d"], "<= 0"),
    "fit: text in a numeric column": (
        ["fit", "text_loss.csv", "--x", "N", "--y", "test_loss", "--group", "d"],
        "is not numeric",
    ),
    "fit: empty CSV": (["fit", "empty.csv", "--x", "N", "--y", "test_loss"], "cannot read it as csv"),
    "fit: a filter matching nothing": (
        ["fit", "runs.parquet", "--x", "N", "--y", "test_loss", "--filter", "d=9"],
        "matches no rows",
    ),
    "fit: joint law with NaN values": (
        ["fit", "nan.parquet", "--law", "joint", "--n", "N", "--p", "P", "--y", "test_loss", "--group", "d"],
        "NaN/inf value(s)",
    ),
    "dimension: non-existent path": (["dimension", "missing.npy"], "no such file"),
    "dimension: truncated .npy": (["dimension", "truncated.npy"], "cannot read it as .npy"),
    "dimension: truncated Parquet": (["dimension", "truncated.parquet"], "truncated or damaged"),
    "dimension: NaN values": (["dimension", "points_nan.parquet"], "missing values"),
    "dimension: no numeric column": (["dimension", "names.csv"], "no float columns"),
    "dimension: missing column": (["dimension", "points_nan.parquet", "--columns", "a", "z"], "missing column(s) z"),
    "implicit-bias: missing column": (["implicit-bias", "runs.parquet"], "missing column(s) norm, error"),
    "implicit-bias: all-NaN errors": (
        ["implicit-bias", "bias_all_nan.parquet"],
        "column 'error' has 12 NaN, infinite or non-numeric value(s) in 12 rows",
    ),
    "implicit-bias: truncated Parquet": (["implicit-bias", "truncated.parquet"], "truncated or damaged"),
    "import-tensorboard: non-existent path": (
        ["import-tensorboard", "no-logs", "-o", "out.parquet"],
        "no such directory",
    ),
    "import-tensorboard: corrupted event file": (
        ["import-tensorboard", "tb", "-o", "out.parquet", "--strict"],
        "truncated or corrupted",
    ),
    "import-tensorboard: output not Parquet": (["import-tensorboard", "tb", "-o", "out.csv"], "written as Parquet"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_table_through_the_cli(case, tables, capsys, monkeypatch):
    argv, expect = CLI_CASES[case]
    monkeypatch.chdir(tables)
    before = files_under(tables)
    returncode = main(argv)  # an escaping exception (a traceback) fails the test
    captured = capsys.readouterr()
    assert_one_line_error(returncode, captured.out, captured.err, expect)
    assert files_under(tables) == before


# ---------------------------------------------------------------- dataset archives


IDX_NAMES = sources.IDX_FILES


def idx_folder(folder: Path) -> Path:
    """Fashion-MNIST's four IDX files, gzipped, with made-up content (so not the originals)."""
    folder.mkdir(parents=True)
    for name in IDX_NAMES:
        (folder / f"{name}.gz").write_bytes(gzip.compress(name.encode() * 100))
    return folder


def test_truncated_dataset_archive_through_the_workflow(tmp_path):
    """The prepare_dataset rule on a local folder whose first archive is cut short."""
    local = idx_folder(tmp_path / "fashion")
    first = local / f"{IDX_NAMES[0]}.gz"
    first.write_bytes(first.read_bytes()[:20])
    config = tiny_config()
    config["datasets"] = {"root": "resources/datasets", "local_dirs": {"fashion-mnist": str(local)}, "download": False}
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "--cores", "1", "resources/datasets/fashion-mnist/data.pt", config=config, check=False)
    # Snakemake adds its own "Error in rule ..." report; the job's own complaint is one line, no traceback
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not a valid gzip file" in errors[0] and str(first) in errors[0]
    datasets_dir = workdir / "resources" / "datasets"
    assert not datasets_dir.exists() or not [p for p in datasets_dir.rglob("*") if p.is_file()]


def test_corrupted_dataset_archive_is_refused_and_leaves_nothing(tmp_path):
    """Intact gzip, wrong content: the md5 of the content names the file."""
    local = idx_folder(tmp_path / "fashion")
    root = tmp_path / "datasets"
    with pytest.raises(UserError) as info:
        sources.prepare("fashion-mnist", root, local_dir=local, download=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("fashion-mnist: checksum mismatch for ")
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def test_truncated_cifar_archive_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    """A CIFAR archive cut short: its md5 no longer matches the table, nothing is extracted."""
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    (src / "batches.meta").write_bytes(b"meta" * 1000)
    archive = tmp_path / "local" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    # the table accepts this archive, as it accepts the real one
    table = [
        (f, hashlib.md5(archive.read_bytes()).hexdigest() if f == archive.name else m)
        for f, m in sources.CHECKSUMS["cifar10"]
    ]
    monkeypatch.setitem(sources.CHECKSUMS, "cifar10", table)
    archive.write_bytes(archive.read_bytes()[:-40])
    root = tmp_path / "datasets"
    with pytest.raises(UserError) as info:
        sources.prepare("cifar10", root, local_dir=archive.parent, download=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("cifar10: checksum mismatch for ")
    assert not (root / "cifar10").exists()
