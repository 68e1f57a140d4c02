"""`scalinglab import-wandb`: real offline runs written by wandb, a chart CSV export in the web UI's
format, and history frames as the public API returns them; imported, then fitted.

The chart export's layout is the one in exports committed to public repositories: every cell
quoted, "Step", then "<run> - <metric>", "<run> - <metric>__MIN", "<run> - <metric>__MAX" per run,
"" where a run logged nothing at that step. The runs table export: "Name", "State", "Notes", "User",
"Tags", "Created", "Runtime", "Sweep", then the config, then the summary metrics.
"""

import csv
import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli import import_wandb
from scalinglab.cli.main import main
from scalinglab.core.errors import UserError

WIDTHS = [64, 128, 256, 512]
SEEDS = [0, 1]
STEPS = 6
SLOPE = -0.5
NOISE = 0.01  # multiplicative noise on each final loss


def loss_curve(width: int, noise: float, steps: int = STEPS) -> list[float]:
    """3 N^-0.5 (1 + noise) times a decay over steps that is the same for every run."""
    return [float(3.0 * width**SLOPE * (1.0 + noise) * (1.0 + 2.0 * np.exp(-step / 2.0))) for step in range(steps)]


def sweep(seed=99):
    """(display name, width, seed, steps, val/loss curve) for 4 widths x 2 seeds; runs log 5 to 7 steps."""
    rng = np.random.default_rng(seed)
    runs = []
    for i, (width, run_seed) in enumerate((w, s) for w in WIDTHS for s in SEEDS):
        steps = STEPS + (i % 3) - 1
        runs.append(
            (f"run-{i}-{width}", width, run_seed, steps, loss_curve(width, NOISE * rng.standard_normal(), steps))
        )
    return runs


def expected_slope(widths, finals):
    return np.polyfit(np.log(widths), np.log(finals), 1)[0]


def fit_json(capsys, table, x="width", metric="val/loss"):
    capsys.readouterr()
    argv = ["fit", str(table), "--x", x, "--y", "value", "--filter", f"metric={metric}"]
    argv += ["--run", "run_id", "--epoch", "step", "--epoch-rule", "final", "--json"]
    assert main(argv) == 0
    [result] = json.loads(capsys.readouterr().out)
    return result


def assert_recovers_the_slope(result, runs):
    assert result["n_points"] == len(WIDTHS) * len(SEEDS)
    assert result["slope"] == pytest.approx(expected_slope([r[1] for r in runs], [r[4][-1] for r in runs]), abs=1e-9)
    # sd 0.01 in log loss over 8 points with sum((log N - mean)^2) = 4.8: standard error 0.0046; 0.025 is 5 of them
    assert result["slope"] == pytest.approx(SLOPE, abs=0.025)


def one_line_error(capsys, argv, *expected):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scalinglab import-wandb: error: "), err
    for text in expected:
        assert text in err[0], err[0]
    return err[0]


# ---------------------------------------------------------------- offline runs written by wandb


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """Real runs from wandb.init(mode="offline"): returns (root holding wandb/, the sweep, {name: run id})."""
    wandb = pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("wandb_runs")
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(root),
        "WANDB_CONFIG_DIR": str(root / "config"),
        "WANDB_CACHE_DIR": str(root / "cache"),
        "WANDB_DATA_DIR": str(root / "data"),
    }
    runs, ids = sweep(), {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            for name, width, seed, _, curve in runs:
                config = {"width": width, "seed": seed, "optimizer": {"name": "adam", "lr": 1e-3}}
                run = wandb.init(project="scaling", name=name, config=config, dir=str(root))
                for step, loss in enumerate(curve):
                    run.log({"val/loss": loss, "train": {"loss": 0.8 * loss}}, step=step)
                ids[name] = run.id
                run.finish()
        finally:
            wandb.teardown()
    return root, runs, ids


def test_offline_runs_import_with_their_config_and_fit(offline, tmp_path, capsys):
    root, runs, ids = offline
    assert (root / "wandb" / "latest-run").is_symlink()  # wandb's own link: each run is read once
    out = tmp_path / "runs.parquet"
    assert main(["import-wandb", str(root / "wandb"), "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    table = pd.read_parquet(out)
    columns = ["run_id", "step", "metric", "value", "run_name", "optimizer.lr", "optimizer.name", "seed", "width"]
    assert list(table.columns) == columns
    assert set(table["run_id"]) == set(ids.values())
    assert pd.api.types.is_integer_dtype(table["width"]) and pd.api.types.is_integer_dtype(table["step"])
    assert set(table["metric"]) == {"val/loss", "train.loss"}  # a nested dict's keys joined by '.'
    for name, width, seed, steps, curve in runs:
        rows = table[(table["run_id"] == ids[name]) & (table["metric"] == "val/loss")]
        assert rows["step"].tolist() == list(range(steps))
        np.testing.assert_allclose(rows["value"], curve, rtol=1e-12)  # W&B keeps float64
        assert set(rows["run_name"]) == {name} and set(rows["width"]) == {width} and set(rows["seed"]) == {seed}
    assert_recovers_the_slope(fit_json(capsys, out), runs)


def test_one_run_directory_or_file_imports_that_run(offline):
    root, runs, ids = offline
    [file] = (root / "wandb").glob(f"offline-run-*-{ids[runs[0][0]]}/run-*.wandb")
    for source in (file.parent, file):
        table = import_wandb.import_source(source)
        assert set(table["run_id"]) == {ids[runs[0][0]]}


@pytest.mark.parametrize("how", ["truncated", "flipped byte"])
def test_damaged_run_file_is_skipped_with_a_warning_or_is_an_error_with_strict(offline, tmp_path, capsys, how):
    root, runs, ids = offline
    wandb_dir = tmp_path / "wandb"
    shutil.copytree(root / "wandb", wandb_dir, symlinks=True)
    [bad] = wandb_dir.glob(f"offline-run-*-{ids[runs[0][0]]}/run-*.wandb")
    data = bytearray(bad.read_bytes())
    if how == "truncated":  # a run killed mid-record
        bad.write_bytes(bytes(data[:-5]))
    else:
        data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
    out = tmp_path / "runs.parquet"
    capsys.readouterr()
    assert main(["import-wandb", str(wandb_dir), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and str(bad) in err[0] and "skipped" in err[0]
    assert set(pd.read_parquet(out)["run_id"]) == set(ids.values()) - {ids[runs[0][0]]}
    one_line_error(capsys, ["import-wandb", str(wandb_dir), "-o", str(tmp_path / "s.parquet"), "--strict"], str(bad))
    assert not (tmp_path / "s.parquet").exists()


def test_missing_wandb_is_a_one_line_error_for_run_files_only(offline, tmp_path, monkeypatch):
    root, _, _ = offline
    chart = tmp_path / "chart.csv"
    write_chart(chart, sweep())
    for name in [n for n in sys.modules if n == "wandb" or n.startswith("wandb.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UserError, match="pip install wandb") as caught:
        import_wandb.import_source(root / "wandb")
    assert "\n" not in str(caught.value)
    assert import_wandb.import_source(chart)["run_id"].nunique() == len(WIDTHS) * len(SEEDS)  # pandas suffices


# ---------------------------------------------------------------- the web UI's CSV exports


def write_chart(path, runs, metric="val/loss", spread=0.0):
    """A line plot's CSV export, as the W&B web UI writes it."""
    header = ["Step"]
    for name, *_ in runs:
        header += [f"{name} - {metric}", f"{name} - {metric}__MIN", f"{name} - {metric}__MAX"]
    lines = [header]
    for step in range(max(r[3] for r in runs)):
        line = [str(step)]
        for _, _, _, steps, curve in runs:
            value = repr(curve[step]) if step < steps else ""
            low = repr(curve[step] * (1 - spread)) if value else ""
            line += [value, low, repr(curve[step] * (1 + spread)) if value else ""]
        lines.append(line)
    with open(path, "w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(lines)


def write_runs_export(path, runs):
    """The runs table's CSV export: bookkeeping columns, the config, the summary metrics."""
    header = ["Name", "State", "Notes", "User", "Tags", "Created", "Runtime", "Sweep", "seed", "width", "val/loss"]
    lines = [header]
    for name, width, seed, _, curve in runs:
        lines.append([name, "finished", "-", "", "", "2026-05-25T10:42:25.000Z", "703", "", seed, width, curve[-1]])
    with open(path, "w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(lines)


@pytest.fixture
def exports(tmp_path):
    runs = sweep()
    write_chart(tmp_path / "chart.csv", runs)
    write_runs_export(tmp_path / "runs_export.csv", runs)
    return tmp_path, runs


def test_chart_export_with_the_runs_export_gives_width_and_seed_and_fits(exports, capsys):
    folder, runs = exports
    assert open(folder / "chart.csv").readline().startswith('"Step","run-0-64 - val/loss","run-0-64 - val/loss__MIN"')
    out = folder / "runs.parquet"
    argv = ["import-wandb", str(folder / "chart.csv"), "--runs", str(folder / "runs_export.csv"), "-o", str(out)]
    assert main(argv) == 0
    assert "warning" not in capsys.readouterr().err
    table = pd.read_parquet(out)
    assert list(table.columns) == ["run_id", "step", "metric", "value", "seed", "width"]  # no bookkeeping, summary
    assert len(table) == sum(r[3] for r in runs)  # the empty cells are no rows
    for name, width, _, steps, curve in runs:
        rows = table[table["run_id"] == name]
        assert rows["step"].tolist() == list(range(steps)) and set(rows["width"]) == {width}
        np.testing.assert_allclose(rows["value"], curve, rtol=1e-15)
    assert_recovers_the_slope(fit_json(capsys, out), runs)


def test_chart_points_that_are_averages_are_named_in_a_warning(tmp_path):
    write_chart(tmp_path / "chart.csv", sweep(), spread=0.01)
    with pytest.warns(UserWarning, match="averages over several logged values"):
        import_wandb.import_source(tmp_path / "chart.csv")


def test_runs_of_the_same_name_in_a_chart_are_told_apart_with_a_warning(tmp_path):
    runs = sweep()[:2]
    runs[1] = (runs[0][0], *runs[1][1:])
    write_chart(tmp_path / "chart.csv", runs)
    with pytest.warns(UserWarning, match="several runs are named 'run-0-64'"):
        table = import_wandb.import_source(tmp_path / "chart.csv")
    assert sorted(table["run_id"].unique()) == ["run-0-64", "run-0-64 #2"]


# ---------------------------------------------------------------- history frames from the public API


def histories_frame(runs, merge_config=False):
    """What wandb.Api().runs(path).histories(format="pandas") returns: the runs' history rows with a
    run_id column, columns sorted."""
    frames = []
    for i, (_, width, seed, _, curve) in enumerate(runs):
        records = [
            {"_step": s, "_runtime": 0.5 * s, "_timestamp": 1.7e9 + s, "val/loss": v, "train/loss": 0.8 * v}
            for s, v in enumerate(curve)
        ]
        frame = pd.DataFrame.from_records(records)
        frame["run_id"] = f"id{i:06d}"
        if merge_config:
            frame["width"], frame["seed"] = width, seed
        frames.append(frame)
    combined = pd.concat(frames).reset_index(drop=True)
    return combined[sorted(combined.columns)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_history_frame_with_a_runs_table_fits(tmp_path, capsys, suffix):
    runs = sweep()
    frame = histories_frame(runs)
    source = tmp_path / f"history{suffix}"
    if suffix == ".csv":
        frame.to_csv(source)  # pandas' default keeps the index: an 'Unnamed: 0' column
    elif suffix == ".parquet":
        frame.to_parquet(source)
    else:
        frame.to_json(source, orient="records", lines=True)
    configs = pd.DataFrame(
        [{"id": f"id{i:06d}", "name": r[0], "width": r[1], "seed": r[2]} for i, r in enumerate(runs)]
    )
    configs.to_csv(tmp_path / "configs.csv", index=False)
    out = tmp_path / "runs.parquet"
    assert main(["import-wandb", str(source), "--runs", str(tmp_path / "configs.csv"), "-o", str(out)]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == ["run_id", "step", "metric", "value", "seed", "width"]
    assert set(table["metric"]) == {"val/loss", "train/loss"}  # _runtime and _timestamp are not metrics
    assert_recovers_the_slope(fit_json(capsys, out), runs)


def test_history_frame_with_config_columns(tmp_path, capsys):
    runs = sweep()
    histories_frame(runs, merge_config=True).to_parquet(tmp_path / "history.parquet")
    out = tmp_path / "runs.parquet"
    assert main(["import-wandb", str(tmp_path / "history.parquet"), "--config", "width", "seed", "-o", str(out)]) == 0
    assert list(pd.read_parquet(out).columns) == ["run_id", "step", "metric", "value", "seed", "width"]
    assert_recovers_the_slope(fit_json(capsys, out), runs)


# ---------------------------------------------------------------- bad inputs


def test_bad_sources_are_one_line_errors(exports, capsys):
    folder, _ = exports
    out = str(folder / "out.parquet")
    (folder / "empty").mkdir()
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(folder / "other.csv", index=False)
    (folder / "notes.txt").write_text("hello")
    (folder / "fake.wandb").write_bytes(b"not a run")
    one_line_error(capsys, ["import-wandb", str(folder / "missing"), "-o", out], "no such file or directory")
    one_line_error(capsys, ["import-wandb", str(folder / "empty"), "-o", out], "no W&B run files")
    one_line_error(capsys, ["import-wandb", str(folder / "other.csv"), "-o", out], "not a W&B export", "no run column")
    one_line_error(capsys, ["import-wandb", str(folder / "notes.txt"), "-o", out], "not a W&B export")
    one_line_error(capsys, ["import-wandb", str(folder / "fake.wandb"), "-o", out, "--strict"], "not a W&B run file")
    one_line_error(capsys, ["import-wandb", str(folder / "runs_export.csv"), "-o", out], "pass it with --runs")
    chart = str(folder / "chart.csv")
    one_line_error(capsys, ["import-wandb", chart, "--runs", str(folder / "other.csv"), "-o", out], "none of its")
    one_line_error(capsys, ["import-wandb", chart, "--runs", str(folder / "nope.csv"), "-o", out], "no such file")
    one_line_error(capsys, ["import-wandb", chart, "-o", str(folder / "runs.csv")], ".parquet")
    assert not os.path.exists(out)


def test_a_chart_export_with_text_in_a_value_cell_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "chart.csv"
    path.write_text('"Step","a - loss","a - loss__MIN","a - loss__MAX"\n"0","1.5","1.5","1.5"\n"1","oops","",""\n')
    one_line_error(capsys, ["import-wandb", str(path), "-o", str(tmp_path / "o.parquet")], "'oops', not a number")
