"""Red-team bad-input cases (second round) through `scalinglab <command>`: one-line errors, or a note."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_bad_input import assert_one_line_error

from scalinglab.cli.main import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_cli")
    rng = np.random.default_rng(0)
    rows = [{"d": d, "N": n, "test_loss": n**-0.5 * (1 + 0.1 * rng.random())} for d in (2, 3) for n in (10, 20, 40, 80)]
    good = pd.DataFrame(rows)
    good.to_parquet(folder / "runs.parquet")
    (folder / "adir").mkdir()
    (folder / "dup.csv").write_text("N,N,test_loss\n10,1,0.5\n20,2,0.4\n40,3,0.3\n")
    (folder / "spaces.csv").write_text("N, test_loss\n10, 0.5\n20, 0.4\n40, 0.3\n")
    dates = good.assign(date=pd.to_datetime(["2024-01-01", "2024-01-02"] * 4))
    dates.to_parquet(folder / "dates.parquet")
    np.save(folder / "points.npy", rng.normal(size=(60, 3)))
    (folder / "afile").write_text("")
    return folder


CASES = {
    "#25 fit: a directory": (["fit", "adir", "--x", "N", "--y", "test_loss"], "adir is a directory; give the path"),
    "#25 dimension: a directory": (["dimension", "adir"], "adir is a directory; give the path"),
    "#9 fit: a repeated column": (["fit", "dup.csv", "--x", "N", "--y", "test_loss"], "column 'N' appears twice in"),
    "#27 fit: ', ' separators": (
        ["fit", "spaces.csv", "--x", "N", "--y", "test_loss"],
        "available: 'N', ' test_loss' (names with spaces around them: the file may use ', ' as separator)",
    ),
    "#15 fit: negative seed": (
        ["fit", "runs.parquet", "--x", "N", "--y", "test_loss", "--bootstrap", "100", "--seed", "-1"],
        "--seed must be >= 0",
    ),
    "#15 dimension: negative seed": (["dimension", "points.npy", "--seed", "-1"], "--seed must be >= 0"),
    "#26 import-tensorboard: output under a file": (
        ["import-tensorboard", "adir", "-o", "afile/out.parquet"],
        "afile is a file, not a directory",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cli_input(case, folder, capsys, monkeypatch):
    argv, expect = CASES[case]
    monkeypatch.chdir(folder)
    returncode = main(argv)
    captured = capsys.readouterr()
    line = assert_one_line_error(returncode, captured.out, captured.err, expect)
    if "--seed" in argv:  # the seed is at fault, not the input file
        assert "points.npy" not in line and "runs.parquet" not in line


def test_import_tensorboard_full_disk(folder, capsys, monkeypatch, tmp_path):
    import scalinglab.core.io as io

    def full(*args, **kwargs):
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device: None")

    monkeypatch.setattr(io, "write_parquet", full)
    monkeypatch.setattr(
        "scalinglab.cli.tensorboard_events.import_logdir", lambda *a, **k: pd.DataFrame({"run_id": ["a"]})
    )
    returncode = main(["import-tensorboard", str(folder / "adir"), "-o", str(tmp_path / "out.parquet")])
    captured = capsys.readouterr()
    line = assert_one_line_error(returncode, captured.out, captured.err, "no space left on device")
    assert "None" not in line and "out.parquet" in line


def test_fit_group_on_dates_json(folder, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    argv = ["fit", "dates.parquet", "--x", "N", "--y", "test_loss", "--group", "date", "--epoch-rule", "all", "--json"]
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["group"]["date"] for r in records] == ["2024-01-01 00:00:00", "2024-01-02 00:00:00"]


def test_dimension_subsample_above_points_notes_it(folder, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    argv = ["dimension", "points.npy", "--subsample", "1000", "--k", "5", "--bootstrap", "0", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "--subsample 1000 is more than the 60 points; using all 60" in captured.err
    assert json.loads(captured.out)[0]["n_points"] == 60
