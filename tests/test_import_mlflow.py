"""`scalinglab import-mlflow`: a real local MLflow store (mlruns) written by MlflowClient, imported, then fitted."""

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from scalinglab.cli import import_mlflow  # noqa: E402
from scalinglab.cli.main import main  # noqa: E402
from scalinglab.core.errors import UserError  # noqa: E402

WIDTHS = [64, 128, 256, 512]
SEEDS = [0, 1]
EPOCHS = 6
SLOPE = -0.5
NOISE = 0.01  # multiplicative noise on each final loss


def curve(width, noise):
    """3 N^-0.5 (1 + noise) times a decay over epochs that is the same for every run."""
    return [float(3.0 * width**SLOPE * (1 + noise) * (1 + 2 * np.exp(-epoch / 2))) for epoch in range(EPOCHS)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Experiment 'scaling': 4 widths x 2 seeds, params width, seed, optimizer, metrics val_loss and
    train_loss per epoch. Experiment 'other': one run left RUNNING. Returns (mlruns, {run_id: (width, val_loss)})."""
    mlruns = tmp_path_factory.mktemp("mlflow") / "mlruns"
    rng = np.random.default_rng(5)
    written = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to write a file store
        client = MlflowClient(tracking_uri=mlruns.as_uri())
        scaling = client.create_experiment("scaling")
        for width in WIDTHS:
            for seed in SEEDS:
                run_id = client.create_run(scaling, run_name=f"w{width}-s{seed}").info.run_id
                for key, value in {"width": width, "seed": seed, "optimizer": "adam"}.items():
                    client.log_param(run_id, key, value)
                losses = curve(width, NOISE * rng.standard_normal())
                for epoch, loss in enumerate(losses):
                    client.log_metric(run_id, "val_loss", loss, step=epoch)
                    client.log_metric(run_id, "train_loss", 0.8 * loss, step=epoch)
                client.set_terminated(run_id)
                written[run_id] = (width, losses)
        other = client.create_experiment("other")
        running = client.create_run(other, run_name="unfinished").info.run_id
        client.log_param(running, "width", 32)
        client.log_metric(running, "val_loss", 1.0, step=0)
    return mlruns, written


def fit_json(capsys, table):
    capsys.readouterr()
    argv = ["fit", str(table), "--x", "width", "--y", "value", "--filter", "metric=val_loss"]
    argv += ["--run", "run_id", "--epoch", "step", "--epoch-rule", "final", "--json"]
    assert main(argv) == 0
    [result] = json.loads(capsys.readouterr().out)
    return result


def one_line_error(capsys, argv, *expected):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scalinglab import-mlflow: error: "), err
    for text in expected:
        assert text in err[0], err[0]


def test_every_run_of_every_experiment_with_params_as_columns(store, tmp_path, capsys):
    mlruns, written = store
    out = tmp_path / "runs.parquet"
    capsys.readouterr()
    assert main(["import-mlflow", str(mlruns), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RUNNING, not FINISHED" in err[0]  # the unfinished run is kept, with a warning
    table = pd.read_parquet(out)
    columns = ["run_id", "step", "metric", "value", "experiment", "run_name", "optimizer", "seed", "width"]
    assert list(table.columns) == columns
    assert table["run_id"].nunique() == len(written) + 1
    assert pd.api.types.is_integer_dtype(table["width"])  # '64' -> 64
    assert table.loc[table["run_name"] == "unfinished", "seed"].isna().all()  # a param it did not log
    assert set(table["experiment"]) == {"scaling", "other"}
    for run_id, (width, losses) in written.items():
        rows = table[(table["run_id"] == run_id) & (table["metric"] == "val_loss")]
        assert rows["step"].tolist() == list(range(EPOCHS)) and set(rows["width"]) == {width}
        np.testing.assert_allclose(rows["value"], losses, rtol=1e-15)  # the file store keeps float64's repr


def test_fit_on_one_experiment_recovers_the_slope(store, tmp_path, capsys):
    mlruns, written = store
    out = tmp_path / "runs.parquet"
    assert main(["import-mlflow", mlruns.as_uri(), "--experiment", "scaling", "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert pd.read_parquet(out)["run_id"].nunique() == len(written)
    result = fit_json(capsys, out)
    assert result["n_points"] == len(written)
    widths, finals = zip(*[(width, losses[-1]) for width, losses in written.values()])
    assert result["slope"] == pytest.approx(np.polyfit(np.log(widths), np.log(finals), 1)[0], abs=1e-9)
    # sd 0.01 in log loss over 8 points with sum((log N - mean)^2) = 4.8: standard error 0.0046; 0.025 is 5 of them
    assert result["slope"] == pytest.approx(SLOPE, abs=0.025)
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") is None  # the import sets it only while it reads


def test_wide_layout_has_one_column_per_metric(store):
    mlruns, written = store
    table = import_mlflow.import_store(mlruns, ["scaling"], wide=True)
    assert list(table.columns[:4]) == ["run_id", "step", "train_loss", "val_loss"]
    assert len(table) == len(written) * EPOCHS
    np.testing.assert_allclose(table["train_loss"], 0.8 * table["val_loss"], rtol=1e-12)


def test_a_step_logged_twice_keeps_the_latest_value_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    for step, value in [(0, 2.0), (1, 1.5), (1, 1.25), (2, 1.0)]:  # step 1 again, as a resumed run would
        client.log_metric(run_id, "loss", value, step=step)
    client.set_terminated(run_id)
    with pytest.warns(UserWarning, match="logged again"):
        table = import_mlflow.import_store(tmp_path / "mlruns")
    assert table["step"].tolist() == [0, 1, 2] and table["value"].tolist() == [2.0, 1.25, 1.0]


def test_bad_stores_are_one_line_errors_and_left_untouched(store, tmp_path, capsys, monkeypatch):
    mlruns, _ = store
    out = str(tmp_path / "out.parquet")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    [experiment_folder] = [p for p in mlruns.iterdir() if (p / "meta.yaml").exists() and p.name != "0"][:1]
    one_line_error(capsys, ["import-mlflow", str(tmp_path / "missing"), "-o", out], "no such directory")
    one_line_error(capsys, ["import-mlflow", str(tmp_path / "empty"), "-o", out], "not an MLflow store")
    assert list((tmp_path / "empty").iterdir()) == []  # mlflow would have made a store there
    one_line_error(capsys, ["import-mlflow", str(tmp_path / "file.txt"), "-o", out], "not a directory")
    one_line_error(capsys, ["import-mlflow", str(experiment_folder), "-o", out], "one experiment's folder")
    one_line_error(capsys, ["import-mlflow", "http://localhost:5000", "-o", out], "only a local store")
    one_line_error(capsys, ["import-mlflow", str(mlruns), "--experiment", "nope", "-o", out], "no experiment 'nope'")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    MlflowClient(tracking_uri=(tmp_path / "fresh").as_uri()).create_experiment("unused")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    one_line_error(capsys, ["import-mlflow", str(tmp_path / "fresh"), "-o", out], "no runs")
    assert not os.path.exists(out)


def test_missing_mlflow_is_a_one_line_error_saying_how_to_install_it(store, monkeypatch):
    for name in [n for n in sys.modules if n == "mlflow" or n.startswith("mlflow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(UserError, match="pip install mlflow") as caught:
        import_mlflow.import_store(store[0])
    assert "\n" not in str(caught.value)
