"""Finite blow-ups count as diverged: the shared rule (core.divergence) on its own, then on real tiny runs
of every stage that trains (a huge learning rate whose loss explodes but stays finite): marked
diverged, left out of the fits with a note, a one-line error naming the setting when every run diverged;
healthy runs stay ok."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_joint_stage import synthetic_table as joint_table

from scalinglab.core.divergence import CEILING, FACTOR, diverged, mark_diverged, series_diverged
from scalinglab.core.errors import UserError
from scalinglab.joint.stage import fit_stage
from scalinglab.teacher_student import stage as ts_stage
from scalinglab.teacher_student.fits import fit_exponents


def one_line_error(excinfo, setting: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and len(message) <= 200 and setting in message, message
    return message


# ---------------------------------------------------------------- the rule


def test_the_rule_flags_blow_ups_and_nothing_healthy():
    initial = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.3, np.nan, np.nan])
    final = np.array([0.01, 1.2, 6.0, 11.0, 1e30, np.inf, 3.5, 1.0, 2e6])
    # learned; ended a bit above (tiny P overfits the test MSE up to ~6x); 11x; 1e30; inf; 11.7x; no initial
    expected = [False, False, False, True, True, True, True, False, True]
    assert diverged(initial, final).tolist() == expected
    assert diverged(1.0, np.nan) and not diverged(1.0, FACTOR) and diverged(1e-9, CEILING * 2, factor=1e20)


def test_series_count_their_peak_against_the_ceiling_only():
    t = np.ones((5, 4))
    t[:, 0] = [1.0, 25.0, 2.0, 0.5, 0.1]  # an early spike, then learning (Sharma & Kaplan's constant lr does so)
    t[:, 1] = [1.0, 1e8, 1e3, 1.0, 0.9]  # blew up and came back: its rows would enter an every-epoch fit
    t[:, 2] = [1.0, 0.5, 1e3, 1e10, 1e30]  # a finite blow-up
    t[:, 3] = [1.0, 0.5, np.nan, np.nan, np.nan]
    assert series_diverged(t).tolist() == [False, True, True, True]
    assert series_diverged(t[:, 0]) == np.False_ and series_diverged(np.empty((0, 3))).tolist() == [False] * 3
    assert series_diverged(t[:, 0], initial=0.001).item()  # ends at 100x an initial loss of 0.001


def test_mark_diverged_sets_every_row_of_a_run_and_keeps_other_statuses():
    frame = pd.DataFrame(
        {
            "run": ["a", "a", "a", "b", "b", "c", "c"],
            "step": [2, 0, 1, 1, 0, 0, 1],  # out of order: the first row is found by `step`
            "loss": [50.0, 1.0, 3.0, 0.5, 1.0, np.nan, np.nan],
            "status": ["ok", "ok", "ok", "ok", "ok", "diverged", "diverged"],
        }
    )
    marked = mark_diverged(frame, ["run"], "step", "loss")
    assert marked["status"].tolist() == ["diverged"] * 3 + ["ok"] * 2 + ["diverged"] * 2
    assert frame["status"].iloc[0] == "ok" and marked.drop(columns="status").equals(frame.drop(columns="status"))
    # a given initial loss (ln K for a classifier at chance) instead of the first row's
    assert mark_diverged(frame.iloc[3:5], ["run"], "step", "loss", initial=0.01)["status"].eq("diverged").all()
    assert mark_diverged(frame.drop(columns="status").iloc[:0], ["run"], "step", "loss").empty


# ---------------------------------------------------------------- teacher/student and joint


@pytest.fixture(scope="module")
def ts_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher_student")
    teacher = root / "teacher.pt"
    ts_stage.make_teacher(d=2, embedding_width=9, teacher_seed=0, teacher=teacher)
    ts_stage.make_dataset(teacher=teacher, n_points=500, stream=["train", 2], points=root / "train.pt")
    ts_stage.make_dataset(teacher=teacher, n_points=2000, stream=["test", 2], points=root / "test.pt")
    return root


def train_ts(root, width: int, max_lr: float, seeds=(0, 1), P=500) -> pd.DataFrame:
    cells = [root / f"P{P}-n{width}-lr{max_lr:g}-seed{s}.parquet" for s in seeds]
    ts_stage.train_bundle(
        train=root / "train.pt",
        test=root / "test.pt",
        cells=cells,
        d=2,
        width=width,
        P=P,
        seeds=list(seeds),
        schedule={"kind": "onecycle", "steps": 60, "batch": 50, "max_lr": max_lr},
        n_evals=5,
        device="cpu",
        compile=False,
        threads=1,
    )
    return pd.concat([pd.read_parquet(c) for c in cells], ignore_index=True)


@pytest.fixture(scope="module")
def ts_runs(ts_files):
    healthy = pd.concat([train_ts(ts_files, n, 0.01) for n in (4, 8, 16)], ignore_index=True)
    blown = train_ts(ts_files, 12, 1e6)  # the finding: test MSE ~1e30, finite
    return healthy, blown


def test_a_finite_teacher_student_blow_up_is_marked_diverged(ts_runs):
    healthy, blown = ts_runs
    assert np.isfinite(blown["test_loss"]).all() and blown["test_loss"].max() > 1e20
    assert (blown["status"] == "diverged").all()
    assert (healthy["status"] == "ok").all()


def test_the_teacher_student_fit_leaves_blow_ups_out_and_says_so(ts_runs):
    healthy, blown = ts_runs
    alone = fit_exponents(healthy, bootstrap=10)
    # a table written before the rule (the blow-up marked ok) is read right too
    for status in ("diverged", "ok"):
        fits = fit_exponents(pd.concat([healthy, blown.assign(status=status)]), bootstrap=10)
        assert fits["slope"].tolist() == alone["slope"].tolist()  # the fit did not see the blown cells
        assert all("excluded 2 diverged cell(s)" in d and "n=12 seed=1" in d for d in fits["diagnostics"])
        assert "excluded 2 diverged cell(s)" in ts_stage.fits_caption(fits)


def test_every_teacher_student_cell_diverged_is_one_line(ts_runs):
    with pytest.raises(UserError, match="every cell diverged") as excinfo:
        fit_exponents(ts_runs[1].assign(status="ok"), bootstrap=10)
    one_line_error(excinfo, "teacher_student.schedule.max_lr")


def test_joint_cells_blown_up_are_one_line_and_a_blown_cell_is_left_out(ts_files):
    blown = train_ts(ts_files, 4, 1e6, P=200)  # joint cells are trained by the teacher/student rule
    assert np.isfinite(blown["test_loss"]).all() and (blown["status"] == "diverged").all()
    with pytest.raises(UserError, match="every cell diverged") as excinfo:
        fit_stage(blown, methods=["vpro"], bootstrap=0)
    one_line_error(excinfo, "joint.schedule.max_lr")
    table = joint_table(seeds=(0, 1))
    last = table.index[(table["N"] == 161) & (table["P"] == 250) & (table["seed"] == 0) & (table["step"] == 2)]
    table.loc[last, "test_loss"] = 1e30  # finite, status still "ok"
    summary, _, cells = fit_stage(table, methods=["vpro"], bootstrap=0)
    assert summary["cells"] == table[["N", "P", "seed"]].drop_duplicates().shape[0] - 1
    assert cells["test_loss"].max() < 10 and any("left out 1 diverged cell(s)" in n for n in summary["notes"])


# ---------------------------------------------------------------- images and deep nets


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    from scalinglab.datasets import sources

    root = tmp_path_factory.mktemp("data")
    return sources.prepare("digits", root)


def train_images(path, tmp, width: int, lr: float) -> pd.DataFrame:
    from scalinglab.images import stage as images_stage

    cells = [tmp / f"c{width}-lr{lr:g}-seed{s}.parquet" for s in (0, 1)]
    return images_stage.train_bundle(
        data=path,
        cells=cells,
        dataset="digits",
        P=64,
        width=width,
        seeds=[0, 1],
        epochs=2,
        batch=32,
        lr=lr,
        weight_decay=0.01,
        augment="none",
        device="cpu",
        threads=1,
    )


def test_images_finite_blow_ups_are_marked_left_out_and_one_line(digits_file, tmp_path):
    from scalinglab.images.fits import fit_images

    healthy = pd.concat([train_images(digits_file, tmp_path, c, 2e-3) for c in (1, 2)], ignore_index=True)
    blown = train_images(digits_file, tmp_path, 3, 3.0)  # train loss 1e2..1e7, finite
    assert (healthy["status"] == "ok").all()
    assert np.isfinite(blown[["train_loss", "val_loss"]]).all().all() and (blown["status"] == "diverged").all()
    # the factor alone flags seed 1 (its losses stay below the ceiling): it ends over 10 ln K
    seed1 = blown[blown["seed"] == 1]["train_loss"]
    assert seed1.max() < CEILING and seed1.iloc[-1] > FACTOR * math.log(10)
    fits = fit_images(pd.concat([healthy, blown]), quantiles=[0.5], bootstrap=0)
    assert (fits[fits["epoch_rule"] == "final"]["n_points"] == 4).all()
    assert all("excluded 2 diverged run(s)" in d and "c=3 seed=1" in d for d in fits["diagnostics"])
    with pytest.raises(UserError, match="every run diverged") as excinfo:
        fit_images(blown, quantiles=[0.5], bootstrap=0)
    one_line_error(excinfo, "images.lr")


def test_deep_nets_finite_blow_ups_are_marked_and_named(digits_file, tmp_path):
    from scalinglab.deep_nets import stage as deepnets_stage

    def train(lr, seeds):
        cells = [tmp_path / f"lr{lr:g}-seed{s}.parquet" for s in seeds]
        args = dict(epochs=2, batch=128, n_logs=3, test_size=100, width=2, depth=None, device="cpu", threads=1)
        return deepnets_stage.train_cell(
            data=digits_file, cells=cells, model="cnn", dataset="digits", P=30, seeds=seeds, lr=lr, **args
        ), cells

    healthy, _ = train(1e-3, [0])
    blown, cells = train(100.0, [1, 2])  # train loss ~1e10..1e14 after step 0, finite
    assert (healthy["status"] == "ok").all()
    assert np.isfinite(blown["train_loss"]).all() and (blown["status"] == "diverged").all()
    assert (pd.read_parquet(cells[0])["status"] == "diverged").all()
    figures = {k: tmp_path / f"{k}.png" for k in ("curves", "collapse", "learning")}
    summary = deepnets_stage.analyse_pair(
        runs=cells,
        model="cnn",
        dataset="digits",
        window=[0.02, 0.2],
        upper_fraction=0.5,
        error="test_error",
        fits_json=tmp_path / "fit.json",
        **figures,
    )
    assert summary["status"] == "unresolved" and summary["diverged_runs"] == 2
    assert "every run of cnn on digits diverged" in summary["message"] and "deep_nets.lr.cnn" in summary["message"]


def test_random_features_gd_refuses_a_learning_rate_that_would_blow_up():
    """Its GD is exact (closed form), so it cannot blow up quietly: lr x curvature >= 2 is an error."""
    from scalinglab.random_features.stage import sweep_pair

    args = dict(times=[3, 100], time_P=1000, time_count=2, time_M=64, Ns=[8], Ps=[8], variance_N=4)
    args.update(variance_Ps=[16], feature_ratio=8, seeds={"min": 1, "budget": 8}, threads=1)
    with pytest.raises(UserError, match="diverges .*lower lr"):
        sweep_pair(sweep="unused.parquet", a=2.0, b=1.5, lr=5.0, **args)
