"""`scalinglab import-tensorboard`: real event files written by torch's SummaryWriter, imported, then fitted."""

import json
import shutil
import sys

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


def test_run_id_is_the_file_path_when_a_directory_holds_several_event_files(tmp_path):
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
    assert sorted(tensorboard_import.run_ids(files, tmp_path).values()) == [
        "a/events.out.tfevents.1",
        "a/events.out.tfevents.2",
        "b/c",
        "events.out.tfevents.4",
    ]


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
