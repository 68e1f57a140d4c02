"""`scalinglab import-tensorboard`: real event files written by torch's SummaryWriter, imported, then fitted."""

import json
import shutil
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorboard")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from scalinglab.cli import tensorboard_events as tensorboard_import  # noqa: E402
from scalinglab.cli.main import main  # noqa: E402
from scalinglab.core.errors import UserError  # noqa: E402

SIZES = [1000, 2512, 6310, 15849, 39811, 100000]  # 10^3 .. 10^5, evenly spaced in log N
SEEDS = [0, 1, 2]
EPOCHS = 10
SLOPE = -0.25
NOISE = 0.02  # multiplicative noise on each logged loss


def true_loss(size: int, epoch: int, noise: float) -> float:
    """3 N^-0.25 (1 + noise), times a decay over epochs that is the same for every run."""
    return 3.0 * size**SLOPE * (1.0 + noise) * (1.0 + 2.0 * np.exp(-epoch / 3.0))


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """6 sizes x 3 seeds, one run directory each; returns (logdir, {run_id: {epoch: validation loss}})."""
    logdir = tmp_path_factory.mktemp("tb") / "logs"
    rng = np.random.default_rng(1234)
    written = {}
    for size in SIZES:
        for seed in SEEDS:
            run_id = f"N{size}_seed{seed}"
            writer = SummaryWriter(str(logdir / run_id))
            writer.add_text("Model size", str(size))
            writer.add_text("optimizer", "AdamW")
            written[run_id] = {}
            for epoch in range(EPOCHS):
                loss = true_loss(size, epoch, NOISE * rng.standard_normal())
                writer.add_scalar("Loss/validation", loss, epoch)
                writer.add_scalar("Loss/train", 0.8 * loss, epoch)
                written[run_id][epoch] = loss
            writer.close()
    return logdir, written


@pytest.fixture(scope="module")
def long_table(logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "runs.parquet"
    assert main(["import-tensorboard", str(logs[0]), "-o", str(out)]) == 0
    return out


def fit_json(capsys, table, y="value", extra=()):
    capsys.readouterr()
    argv = [
        "fit",
        str(table),
        "--x",
        "Model size",
        "--y",
        y,
        *extra,
        "--run",
        "run_id",
        "--epoch",
        "step",
        "--epoch-rule",
        "final",
        "--json",
    ]
    assert main(argv) == 0
    [result] = json.loads(capsys.readouterr().out)
    return result


def expected_final_slope(written):
    """OLS slope of log(final validation loss) on log N, computed here from the values we logged
    (rounded to float32, as TensorBoard stores scalars)."""
    sizes = [int(run_id[1:].split("_")[0]) for run_id in written]
    finals = [float(np.float32(epochs[EPOCHS - 1])) for epochs in written.values()]
    return np.polyfit(np.log(sizes), np.log(finals), 1)[0]


def test_long_table_has_one_row_per_logged_scalar_with_text_tags_as_columns(logs, long_table):
    _, written = logs
    table = pd.read_parquet(long_table)
    assert list(table.columns) == ["run_id", "step", "metric", "value", "Model size", "optimizer"]
    assert len(table) == len(SIZES) * len(SEEDS) * 2 * EPOCHS
    assert set(table["run_id"]) == set(written)  # run_id = the run's directory, which holds one event file
    assert pd.api.types.is_integer_dtype(table["Model size"])  # '1000' became the number 1000
    assert not pd.api.types.is_numeric_dtype(table["optimizer"])
    assert (table["Model size"] == table["run_id"].str.extract(r"N(\d+)_")[0].astype(int)).all()

    validation = table[table["metric"] == "Loss/validation"]
    got = {(row.run_id, row.step): row.value for row in validation.itertuples()}
    want = {(run_id, epoch): loss for run_id, epochs in written.items() for epoch, loss in epochs.items()}
    assert got.keys() == want.keys()
    # TensorBoard stores scalars as float32: relative error up to 2^-24 ~ 6e-8.
    np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-7)


def test_fit_on_imported_table_recovers_the_slope(logs, long_table, capsys):
    _, written = logs
    result = fit_json(capsys, long_table, extra=["--filter", "metric=Loss/validation"])
    assert result["n_points"] == len(SIZES) * len(SEEDS)  # one row per run: its final epoch
    assert result["n_clusters"] == len(SIZES) * len(SEEDS)
    # The fit saw exactly the final-epoch values we logged: same OLS slope to rounding.
    assert result["slope"] == pytest.approx(expected_final_slope(written), abs=1e-9)
    # Noise of sd 0.02 in log loss over 18 points with sum((log N - mean)^2) = 44.5 gives a slope
    # standard error of 0.02 / sqrt(44.5) = 0.003; 0.015 is 5 standard errors.
    assert result["slope"] == pytest.approx(SLOPE, abs=0.015)


def test_wide_table_has_one_column_per_metric_and_fits_the_same(logs, tmp_path, capsys):
    _, written = logs
    out = tmp_path / "wide.parquet"
    assert main(["import-tensorboard", str(logs[0]), "-o", str(out), "--wide"]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == ["run_id", "step", "Loss/train", "Loss/validation", "Model size", "optimizer"]
    assert len(table) == len(SIZES) * len(SEEDS) * EPOCHS
    np.testing.assert_allclose(table["Loss/train"], 0.8 * table["Loss/validation"], rtol=1e-6)
    result = fit_json(capsys, out, y="Loss/validation")
    assert result["slope"] == pytest.approx(expected_final_slope(written), abs=1e-9)


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":  # a writer killed mid-record
        path.write_bytes(bytes(data[:-7]))
    else:  # one flipped byte inside a record: its checksum fails
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "flipped byte"])
def test_damaged_event_file_is_skipped_with_a_warning_or_is_an_error_with_strict(logs, tmp_path, capsys, how):
    logdir = tmp_path / "logs"
    shutil.copytree(logs[0], logdir)
    [bad] = (logdir / "N1000_seed0").iterdir()
    damage(bad, how)
    out = tmp_path / "runs.parquet"

    capsys.readouterr()
    assert main(["import-tensorboard", str(logdir), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and str(bad) in err[0] and "skipped" in err[0]
    table = pd.read_parquet(out)
    assert table["run_id"].nunique() == len(SIZES) * len(SEEDS) - 1
    assert "N1000_seed0" not in set(table["run_id"])

    strict_out = tmp_path / "strict.parquet"
    assert main(["import-tensorboard", str(logdir), "-o", str(strict_out), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scalinglab import-tensorboard: error: ") and str(bad) in err[0]
    assert not strict_out.exists()


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda tmp: tmp / "no_such_dir", "no such directory"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no TensorBoard event files"),
    ],
    ids=["missing", "empty"],
)
def test_missing_or_empty_logdir_is_a_one_line_error(tmp_path, capsys, setup, message):
    logdir = setup(tmp_path)
    out = tmp_path / "runs.parquet"
    assert main(["import-tensorboard", str(logdir), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("scalinglab import-tensorboard: error: ")
    assert str(logdir) in err[0] and message in err[0]
    assert not out.exists()


def test_unwritable_output_is_a_one_line_error(logs, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert main(["import-tensorboard", str(logs[0]), "-o", str(blocker / "runs.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a_file is a file, not a directory" in err[0]
    assert main(["import-tensorboard", str(logs[0]), "-o", str(tmp_path / "runs.csv")]) == 2
    assert ".parquet" in capsys.readouterr().err


def test_run_id_is_the_directory_even_when_it_holds_several_event_files(tmp_path):
    for name in [
        "a/events.out.tfevents.1",
        "a/events.out.tfevents.2",
        "b/c/events.out.tfevents.3",
        "events.out.tfevents.4",
        "b/notes.txt",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    files = tensorboard_import.find_event_files(tmp_path)
    assert sorted(tensorboard_import.run_ids(files, tmp_path).values()) == ["a", "a", "b/c", "events.out.tfevents.4"]


def test_a_preempted_and_resumed_writer_is_one_run(tmp_path, capsys):
    """A writer killed at step 5 and a new one resuming from step 4 in the same directory: one run,
    its final row the resumed writer's step 10 (not two runs, one of which ends at step 5)."""
    first = SummaryWriter(str(tmp_path / "n64000"), filename_suffix=".a")
    for step in range(6):
        first.add_scalar("loss", 10.0 - step, step)
    first.close()
    time.sleep(1.1)  # the second writer's file is started later (its name carries the time)
    second = SummaryWriter(str(tmp_path / "n64000"), filename_suffix=".b")
    for step in range(4, 11):
        second.add_scalar("loss", 5.0 - 0.1 * step, step)
    second.close()
    out = tmp_path / "runs.parquet"
    assert main(["import-tensorboard", str(tmp_path), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 event files in one directory, joined as one run" in err and "logged again" in err
    table = pd.read_parquet(out)
    assert table["run_id"].unique().tolist() == ["n64000"]
    assert table["step"].tolist() == list(range(11))
    assert table.set_index("step").loc[4, "value"] == pytest.approx(4.6) and table["value"].iloc[-1] == 4.0


def test_a_step_logged_twice_keeps_the_last_value_with_a_warning(tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_text("Model size", "1.5e3")
    for step, value in [(0, 2.0), (1, 1.5), (1, 1.25), (2, 1.0)]:  # step 1 again, as a resumed run would
        writer.add_scalar("loss", value, step)
    writer.close()
    with pytest.warns(UserWarning, match="logged again"):
        table = tensorboard_import.import_logdir(tmp_path)
    assert table["step"].tolist() == [0, 1, 2]
    assert table["value"].tolist() == [2.0, 1.25, 1.0]
    assert table["Model size"].tolist() == [1500.0] * 3


def test_missing_tensorboard_is_a_one_line_error_saying_how_to_install_it(logs, monkeypatch):
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(UserError, match="pip install tensorboard") as caught:
        tensorboard_import.import_logdir(logs[0])
    assert "\n" not in str(caught.value)


def test_tensor_format_scalars_and_text_with_metadata_only_on_the_first_value(tmp_path):
    """TensorFlow 2 writers log scalars as tensors and attach the plugin metadata to a tag's first value only."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.plugins.text.summary_v2 import text_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path / "tf2run"))
    for step, loss in enumerate([0.9, 0.7, 0.6]):
        summary = scalar_pb("val_loss", loss)
        if step == 0:
            summary.value.extend(text_pb("Model size", "2048").value)
        else:
            summary.value[0].ClearField("metadata")
        writer.add_event(event_pb2.Event(step=step, summary=summary))
    writer.close()
    table = tensorboard_import.import_logdir(tmp_path)
    assert table["run_id"].tolist() == ["tf2run"] * 3
    assert table["metric"].tolist() == ["val_loss"] * 3
    np.testing.assert_allclose(table["value"], [0.9, 0.7, 0.6], rtol=1e-7)  # float32 tensors
    assert table["Model size"].tolist() == [2048] * 3


# ---------------------------------------------------------------- SummaryWriter.add_hparams

HP_WIDTHS = [64, 128, 256, 512]
HP_SEEDS = [0, 1]
HP_SLOPE = -0.5
HP_NOISE = 0.01


@pytest.fixture(scope="module")
def hparam_logs(tmp_path_factory):
    """4 widths x 2 seeds, one SummaryWriter each, ending with add_hparams (which writes an event file
    of its own in a sub-directory); the directory names do not tell the width, only the hparams do.
    Returns (logdir, {run_id: (width, seed, final loss)})."""
    logdir = tmp_path_factory.mktemp("tb_hparams") / "logs"
    rng = np.random.default_rng(77)
    written = {}
    for i, (width, seed) in enumerate((w, s) for w in HP_WIDTHS for s in HP_SEEDS):
        writer = SummaryWriter(str(logdir / f"trial{i}"))
        noise = HP_NOISE * rng.standard_normal()
        for epoch in range(EPOCHS):
            loss = 3.0 * width**HP_SLOPE * (1 + noise) * (1 + 2 * np.exp(-epoch / 3))
            writer.add_scalar("loss", loss, epoch)
        hparams = {"width": width, "seed": seed, "lr": 1e-3, "optimizer": "adam", "bn": True}
        writer.add_hparams(hparams, {"hparam/final_loss": loss})
        writer.close()
        written[f"trial{i}"] = (width, seed, float(np.float32(loss)))
    return logdir, written


def test_add_hparams_gives_one_run_per_writer_with_the_hparams_as_columns(hparam_logs, tmp_path, capsys):
    logdir, written = hparam_logs
    assert len(tensorboard_import.find_event_files(logdir)) == 2 * len(written)  # a writer's file and its sub-run's
    out = tmp_path / "runs.parquet"
    assert main(["import-tensorboard", str(logdir), "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    table = pd.read_parquet(out)
    assert list(table.columns) == ["run_id", "step", "metric", "value", "bn", "lr", "optimizer", "seed", "width"]
    assert set(table["run_id"]) == set(written)
    assert pd.api.types.is_integer_dtype(table["width"]) and pd.api.types.is_integer_dtype(table["seed"])
    assert set(table["optimizer"]) == {"adam"} and set(table["lr"]) == {1e-3}
    assert set(table["bn"]) == {1}  # torch writes a bool hparam as the number 1
    for run_id, (width, seed, final) in written.items():
        rows = table[table["run_id"] == run_id]
        assert set(rows["width"]) == {width} and set(rows["seed"]) == {seed}
        assert rows.loc[rows["metric"] == "loss", "step"].tolist() == list(range(EPOCHS))
        # the hparam metric folds in as a row of the writer's run, at step 0 (add_hparams without global_step)
        [(step, value)] = rows.loc[rows["metric"] == "hparam/final_loss", ["step", "value"]].itertuples(index=False)
        assert step == 0 and value == final


@pytest.mark.parametrize("metric", ["loss", "hparam/final_loss"])
def test_fit_on_hparams_recovers_the_slope(hparam_logs, tmp_path, capsys, metric):
    logdir, written = hparam_logs
    out = tmp_path / "runs.parquet"
    assert main(["import-tensorboard", str(logdir), "-o", str(out)]) == 0
    capsys.readouterr()
    argv = ["fit", str(out), "--x", "width", "--y", "value", "--filter", f"metric={metric}", "--run", "run_id"]
    assert main([*argv, "--epoch", "step", "--epoch-rule", "final", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["n_points"] == len(written)
    widths, finals = zip(*[(width, final) for width, _, final in written.values()])
    assert result["slope"] == pytest.approx(np.polyfit(np.log(widths), np.log(finals), 1)[0], abs=1e-9)
    # sd 0.01 in log loss over 8 points with sum((log N - mean)^2) = 4.8: standard error 0.0046; 0.025 is 5 of them
    assert result["slope"] == pytest.approx(HP_SLOPE, abs=0.025)


def test_hparams_in_the_wide_layout_and_of_one_writer(hparam_logs):
    logdir, written = hparam_logs
    table = tensorboard_import.import_logdir(logdir, wide=True)
    columns = ["run_id", "step", "hparam/final_loss", "loss", "bn", "lr", "optimizer", "seed", "width"]
    assert list(table.columns) == columns
    assert len(table) == len(written) * EPOCHS
    one = tensorboard_import.import_logdir(logdir / "trial3")  # LOGDIR is the writer's directory
    assert one["run_id"].nunique() == 1 and set(one["width"]) == {written["trial3"][0]}


def test_hparams_beside_the_writer_and_written_twice(tmp_path):
    """add_hparams(run_name='.') puts the hparams file beside the writer's; a second add_hparams with
    other values wins, with a warning."""
    writer = SummaryWriter(str(tmp_path / "logs" / "run"))
    for epoch, loss in enumerate([2.0, 1.0]):
        writer.add_scalar("loss", loss, epoch)
    writer.add_hparams({"width": 8}, {"hparam/loss": 1.5}, run_name=".")
    writer.add_hparams({"width": 16}, {"hparam/loss": 1.0}, run_name="again")
    writer.close()
    assert len(tensorboard_import.find_event_files(tmp_path / "logs")) == 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = tensorboard_import.import_logdir(tmp_path / "logs")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "hparam 'width' was written as 8 and as 16; kept 16" in messages[0]
    assert "logged again" in messages[1] and "'hparam/loss' at step 0" in messages[1]
    assert set(table["run_id"]) == {"run"}  # the sub-run beside it does not make 'run' a directory of two runs
    assert set(table["width"]) == {16}
    assert table.loc[table["metric"] == "hparam/loss", "value"].tolist() == [1.0]


def test_hparams_without_a_writer_are_a_run_of_their_own(tmp_path):
    writer = SummaryWriter(str(tmp_path / "logs" / "sweep"))
    writer.add_hparams({"width": 32}, {"hparam/loss": 0.5}, run_name="trial")
    writer.close()
    for path in (tmp_path / "logs" / "sweep").glob("events*"):
        path.unlink()  # the writer's own (empty) file: only the sub-run is left
    table = tensorboard_import.import_logdir(tmp_path / "logs")
    assert table["run_id"].tolist() == ["sweep/trial"] and table["width"].tolist() == [32]


def test_a_damaged_writer_takes_its_hparams_sub_run_along(hparam_logs, tmp_path):
    logdir = tmp_path / "logs"
    shutil.copytree(hparam_logs[0], logdir)
    [bad] = [p for p in (logdir / "trial0").iterdir() if p.is_file()]
    damage(bad, "truncated")
    with pytest.warns(UserWarning, match="skipped this run"):
        table = tensorboard_import.import_logdir(logdir)
    assert "trial0" not in set(table["run_id"]) and table["run_id"].nunique() == len(hparam_logs[1]) - 1


def test_tensorflow_style_hparams_in_the_runs_own_file(tmp_path):
    """TensorFlow's hp.hparams writes the session_start_info into the run's own event file, bools as bools."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path / "tf2run"))
    hparams = {"width": 128, "dropout": 0.1, "batch_norm": True, "optimizer": "sgd"}
    writer.add_event(event_pb2.Event(step=0, summary=hparams_pb(hparams)))
    for step, loss in enumerate([0.9, 0.7]):
        writer.add_event(event_pb2.Event(step=step, summary=scalar_pb("val_loss", loss)))
    writer.close()
    table = tensorboard_import.import_logdir(tmp_path)
    assert list(table.columns) == ["run_id", "step", "metric", "value", "batch_norm", "dropout", "optimizer", "width"]
    assert table["run_id"].tolist() == ["tf2run"] * 2
    assert table["width"].tolist() == [128] * 2 and pd.api.types.is_integer_dtype(table["width"])
    assert table["batch_norm"].tolist() == [True] * 2 and table["dropout"].tolist() == [0.1] * 2
