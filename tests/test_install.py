"""The package stands alone: `pip install .` (not editable) ships the schema and the `scalinglab`
command, which then fits a small CSV in a folder with no config/ beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from workflow_helpers import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed from a copy of the tree into its own folder (the dependencies are the
    test environment's; --no-build-isolation uses its setuptools, so nothing is downloaded)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source")
    # only what a source distribution holds: no config/, workflow/ or tests/
    subprocess.run(["cp", "-r", str(REPO / "src"), str(REPO / "pyproject.toml"), str(REPO / "README.md"), str(source)])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


def run_installed(target, tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import sys, scalinglab.cli.main as m; sys.exit(m.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_the_installed_package_is_the_copy_and_ships_its_schema(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    code = "import scalinglab.core.config as c; print(c.__file__); print(c.SCHEMA_PATH.exists()); c.validate({})"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    path, exists = out.stdout.split()
    assert path.startswith(str(installed)) and exists == "True"
    assert (installed / "bin" / "scalinglab").exists()  # the console script


def test_the_installed_command_fits_a_small_csv_without_the_repository(installed, tmp_path):
    lines = ["N,loss,seed"] + [
        f"{n},{3.0 * n**-0.5 * (1 + 0.01 * s):.6f},{s}" for s in (0, 1) for n in (100, 200, 400, 800)
    ]
    (tmp_path / "small.csv").write_text("\n".join(lines) + "\n")
    assert not (tmp_path / "config").exists()
    result = run_installed(
        installed, tmp_path, "fit", "small.csv", "--x", "N", "--y", "loss", "--run", "seed", "--json"
    )
    assert result.returncode == 0, result.stderr
    (fit,) = json.loads(result.stdout)
    assert fit["slope"] == pytest.approx(-0.5, abs=1e-6)  # the seeds differ by a constant factor only
    assert run_installed(installed, tmp_path, "--help").returncode == 0
