"""Power-law fits: recovery of known exponents, cluster bootstrap, epoch rules, diagnostics, CLI."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli.filters import parse_filters
from scalinglab.cli.main import main
from scalinglab.core.errors import UserError
from scalinglab.laws import power_law as fits
from scalinglab.laws.inputs import select_epochs

SIZES = np.array([100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000])


def power_law_table(slope=-0.5, scale=3.0, noise=0.1, seeds=5, sizes=SIZES, seed=0, run_noise=0.0, rows_per_run=1):
    """y = scale * N^slope * exp(run offset + row noise): a run is (N, seed), with `rows_per_run` rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for s in range(seeds):
            offset = rng.normal(0.0, run_noise)
            for r in range(rows_per_run):
                y = scale * n**slope * math.exp(offset + rng.normal(0.0, noise))
                rows.append({"N": int(n), "seed": s, "rep": r, "run": f"{n}-{s}", "loss": y})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ recovery of known exponents


def test_least_squares_recovers_slope_and_intercept():
    fit = fits.fit_power_law(power_law_table(slope=-0.5), "N", "loss")
    # 40 points, log-noise sd 0.1, log N spread sd ~2.3: slope SE ~ 0.007; allow ~4 SE.
    assert fit.slope == pytest.approx(-0.5, abs=0.03)
    assert fit.intercept == pytest.approx(math.log(3.0), abs=0.3)
    assert fit.ci[0] < -0.5 < fit.ci[1]
    assert fit.ci[1] - fit.ci[0] < 0.08
    assert fit.alpha == pytest.approx(-fit.slope)
    assert fit.dim == pytest.approx(4 / 0.5, rel=0.07)
    assert (fit.method, fit.quantile, fit.n_points, fit.n_sizes, fit.n_clusters) == ("ols", None, 40, 8, 40)
    assert fit.diagnostics == []


def test_least_squares_matches_closed_form():
    frame = power_law_table(slope=-0.3, seed=4)
    lx, ly = np.log(frame["N"].to_numpy(float)), np.log(frame["loss"].to_numpy())
    slope, intercept = np.polyfit(lx, ly, 1)
    fit = fits.fit_power_law(frame, "N", "loss")
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)


def test_median_regression_recovers_slope_and_resists_outliers():
    frame = power_law_table(slope=-0.7, seed=1)
    fit = fits.fit_power_law(frame, "N", "loss", quantile=0.5)
    assert fit.method == "quantile" and fit.quantile == 0.5
    assert fit.slope == pytest.approx(-0.7, abs=0.04)
    assert fit.ci[0] < -0.7 < fit.ci[1]

    # Diverged runs at the two largest sizes (loss 20x too high in 2 of 5 seeds) drag least
    # squares off the law; the median ignores them.
    spoiled = frame.copy()
    bad = spoiled["N"].isin(SIZES[-2:]) & spoiled["seed"].isin([0, 1])
    spoiled.loc[bad, "loss"] *= 20.0
    median = fits.fit_power_law(spoiled, "N", "loss", quantile=0.5)
    ols = fits.fit_power_law(spoiled, "N", "loss")
    assert median.slope == pytest.approx(-0.7, abs=0.05)
    assert ols.slope > -0.6  # pulled up by more than 0.1


def test_bootstrap_ci_contains_truth_and_is_reproducible():
    frame = power_law_table(slope=-0.5, seed=2)
    ols = fits.fit_power_law(frame, "N", "loss", cluster="seed", bootstrap=400, seed=7)
    assert ols.ci[0] < -0.5 < ols.ci[1]
    assert ols.ci[0] < ols.slope < ols.ci[1]
    assert ols.n_clusters == 5 and ols.bootstrap == 400 and ols.skipped_draws == 0
    again = fits.fit_power_law(frame, "N", "loss", cluster="seed", bootstrap=400, seed=7)
    other = fits.fit_power_law(frame, "N", "loss", cluster="seed", bootstrap=400, seed=8)
    assert again.ci == ols.ci
    assert other.ci != ols.ci

    median = fits.fit_power_law(frame, "N", "loss", quantile=0.5, cluster="seed", bootstrap=100, seed=7)
    assert median.ci[0] < -0.5 < median.ci[1]


def test_cluster_bootstrap_is_wider_than_row_bootstrap_when_runs_share_an_offset():
    """Each run logs 10 rows that share the run's random offset: the rows are not independent.

    Resampling rows treats 240 rows as 240 independent points and gives a CI ~sqrt(10) too narrow;
    resampling runs gives the honest width. Over 40 synthetic data sets the run bootstrap covers
    the true slope about 90% of the time, the row bootstrap about half the time.
    """
    covered = {"rows": 0, "runs": 0}
    widths = {"rows": [], "runs": []}
    trials = 40
    for trial in range(trials):
        frame = power_law_table(slope=-0.5, noise=0.02, run_noise=0.2, seeds=3, rows_per_run=10, seed=100 + trial)
        for name, cluster in (("rows", None), ("runs", "run")):
            fit = fits.fit_power_law(frame, "N", "loss", cluster=cluster, bootstrap=300, seed=trial)
            covered[name] += fit.ci[0] < -0.5 < fit.ci[1]
            widths[name].append(fit.ci[1] - fit.ci[0])
    assert np.median(widths["runs"]) > 2.0 * np.median(widths["rows"])
    assert covered["runs"] / trials >= 0.8
    assert covered["rows"] / trials <= 0.7


def test_analytic_ci_matches_t_interval():
    from scipy import stats

    frame = power_law_table(slope=-0.4, seed=3)
    lx, ly = np.log(frame["N"].to_numpy(float)), np.log(frame["loss"].to_numpy())
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (intercept + slope * lx)
    se = math.sqrt(resid @ resid / (len(ly) - 2) / ((lx - lx.mean()) ** 2).sum())
    half = stats.t.ppf(0.95, len(ly) - 2) * se  # 90% interval
    fit = fits.fit_power_law(frame, "N", "loss", confidence=0.9)
    assert fit.ci[0] == pytest.approx(slope - half, rel=1e-9)
    assert fit.ci[1] == pytest.approx(slope + half, rel=1e-9)


# ------------------------------------------------------------------ epoch rules


def epochs_table():
    # Two runs (seed 0, 1) of one size; seed 1's loss rises after epoch 1 (overfitting).
    return pd.DataFrame(
        {
            "N": [10] * 6,
            "seed": [0, 0, 0, 1, 1, 1],
            "epoch": [0, 2, 1, 0, 1, 2],
            "loss": [3.0, 1.0, 2.0, 4.0, 0.5, 0.9],
        }
    )


def test_epoch_rule_final_takes_each_runs_last_epoch():
    chosen = select_epochs(epochs_table(), "loss", ["N", "seed"], epoch="epoch", rule="final")
    assert chosen[["seed", "epoch", "loss"]].values.tolist() == [[0, 2, 1.0], [1, 2, 0.9]]


def test_epoch_rule_best_takes_minimum_or_maximum():
    best = select_epochs(epochs_table(), "loss", ["N", "seed"], rule="best")
    assert best[["seed", "epoch", "loss"]].values.tolist() == [[0, 2, 1.0], [1, 1, 0.5]]
    most = select_epochs(epochs_table(), "loss", ["N", "seed"], rule="best", maximize=True)
    assert most[["seed", "epoch", "loss"]].values.tolist() == [[0, 0, 3.0], [1, 0, 4.0]]


def test_epoch_rule_best_keeps_a_nan_run_so_the_fit_reports_it():
    table = epochs_table()
    table.loc[table["seed"] == 1, "loss"] = np.nan
    best = select_epochs(table, "loss", ["N", "seed"], rule="best")
    assert len(best) == 2 and best["loss"].isna().sum() == 1


def test_epoch_rule_all_keeps_every_row():
    table = epochs_table()
    assert len(select_epochs(table, "loss", ["N", "seed"], rule="all")) == len(table)


def test_epoch_rule_errors():
    table = epochs_table()
    with pytest.raises(UserError, match="needs the epoch column"):
        select_epochs(table, "loss", ["N", "seed"], rule="final")
    with pytest.raises(UserError, match="unknown epoch rule 'last'"):
        select_epochs(table, "loss", ["N", "seed"], epoch="epoch", rule="last")
    # Leaving seed out of the run columns makes two runs look like one: refuse rather than mix them.
    with pytest.raises(UserError, match="name the column that tells those runs apart"):
        select_epochs(table, "loss", ["N"], epoch="epoch", rule="final")


# ------------------------------------------------------------------ diagnostics


def test_floor_diagnostic_fires_on_a_flattening_curve_only():
    # Loss = N^-1 + 2e-4: slope ~ -1 over small sizes, ~ -0.1 at the large end (a floor, as when the
    # student out-resolves the teacher at d = 2).
    rng = np.random.default_rng(5)
    n = np.repeat(SIZES, 3)
    floor = pd.DataFrame({"N": n, "loss": (1.0 / n + 2e-4) * np.exp(rng.normal(0, 0.03, n.size))})
    fit = fits.fit_power_law(floor, "N", "loss")
    messages = [m for m in fit.diagnostics if "flattens" in m]
    assert len(messages) == 1
    assert "largest half" in messages[0] and "smallest half" in messages[0]

    clean = fits.fit_power_law(power_law_table(slope=-1.0, noise=0.03, seed=6), "N", "loss")
    assert not any("flattens" in m for m in clean.diagnostics)


def test_few_sizes_diagnostic():
    three = power_law_table(sizes=SIZES[:3])
    fit = fits.fit_power_law(three, "N", "loss")
    assert fit.n_sizes == 3
    assert any("only 3 distinct N" in m for m in fit.diagnostics)
    four = fits.fit_power_law(power_law_table(sizes=SIZES[:4]), "N", "loss")
    assert not any("distinct N" in m for m in four.diagnostics)


def test_skipped_draws_are_counted():
    # 4 rows, one at the larger size: a draw misses it with probability (3/4)^4 ~ 0.32 (64 of 200).
    frame = pd.DataFrame({"N": [10, 10, 10, 100], "loss": [1.0, 1.1, 0.9, 0.3]})
    fit = fits.fit_power_law(frame, "N", "loss", bootstrap=200, seed=0)
    assert 40 < fit.skipped_draws < 90
    assert any(f"{fit.skipped_draws} of 200 bootstrap draws skipped" in m for m in fit.diagnostics)


def test_single_cluster_bootstrap_gives_no_ci():
    frame = power_law_table(seeds=1)
    fit = fits.fit_power_law(frame, "N", "loss", cluster="seed", bootstrap=50)
    assert math.isnan(fit.ci[0]) and math.isnan(fit.ci[1])
    assert any("at least 2 clusters" in m for m in fit.diagnostics)


def test_expected_sign_diagnostic():
    frame = power_law_table(slope=-0.5)
    assert not any("slope is" in m for m in fits.fit_power_law(frame, "N", "loss", expect_sign=-1).diagnostics)
    wrong = fits.fit_power_law(frame, "N", "loss", expect_sign=1).diagnostics
    assert any("slope is negative" in m for m in wrong)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda f: f.drop(columns="loss"), "missing column.*loss"),
        (lambda f: f.assign(loss=f["loss"].where(f.index % 10 != 0)), "column 'loss' has 4 NaN/inf value"),
        (lambda f: f.assign(loss=f["loss"].where(f.index != 3, np.inf)), "column 'loss' has 1 NaN/inf value"),
        (lambda f: f.assign(loss=f["loss"].where(f.index != 3, -1.0)), "column 'loss' has 1 value.*<= 0"),
        (lambda f: f.assign(N=7), "column 'N' has a single distinct value"),
        (lambda f: f.assign(N="big"), "column 'N' is not numeric"),
        (lambda f: f.iloc[:0], "no rows to fit"),
    ],
)
def test_bad_input_raises_one_line_user_error(change, pattern):
    with pytest.raises(UserError, match=pattern) as info:
        fits.fit_power_law(change(power_law_table()), "N", "loss")
    assert "\n" not in str(info.value)


def test_bad_options_raise():
    frame = power_law_table()
    with pytest.raises(UserError, match="quantile"):
        fits.fit_power_law(frame, "N", "loss", quantile=1.5)
    with pytest.raises(UserError, match="bootstrap"):
        fits.fit_power_law(frame, "N", "loss", bootstrap=-1)


# ------------------------------------------------------------------ result object, groups, filters


def test_dim_ci_and_json_safety():
    fit = fits.PowerLawFit(
        slope=-0.5,
        intercept=0.0,
        ci=(-0.8, -0.4),
        n_points=9,
        n_clusters=9,
        n_sizes=9,
        method="ols",
        quantile=None,
        bootstrap=0,
    )
    assert fit.dim == 8.0
    assert fit.dim_ci == pytest.approx((5.0, 10.0))
    crossing = fits.PowerLawFit(
        slope=-0.1,
        intercept=0.0,
        ci=(-0.2, 0.05),
        n_points=9,
        n_clusters=9,
        n_sizes=9,
        method="ols",
        quantile=None,
        bootstrap=0,
    )
    assert crossing.dim_ci == (20.0, math.inf)
    flat = fits.PowerLawFit(
        slope=0.0,
        intercept=0.0,
        ci=(math.nan, math.nan),
        n_points=2,
        n_clusters=2,
        n_sizes=2,
        method="ols",
        quantile=None,
        bootstrap=0,
    )
    record = flat.to_dict()
    assert record["dim"] is None and record["ci"] == [None, None] and record["dim_ci"] == [None, None]
    json.dumps(crossing.to_dict(), allow_nan=False)
    assert "d = 4/|slope| = 40" in crossing.summary()


def test_fit_groups_and_frame():
    frame = pd.concat([power_law_table(slope=-0.5).assign(d=8), power_law_table(slope=-1.0, seed=9).assign(d=4)])
    results = fits.fit_groups(frame, "N", "loss", group=["d"])
    assert [labels for labels, _ in results] == [{"d": 4}, {"d": 8}]
    assert type(results[0][0]["d"]) is int
    assert results[0][1].slope == pytest.approx(-1.0, abs=0.03)
    assert results[1][1].slope == pytest.approx(-0.5, abs=0.03)
    table = fits.fits_to_frame(results)
    assert list(table.columns[:4]) == ["d", "slope", "intercept", "ci_lo"]
    assert table["dim"].tolist() == pytest.approx([4.0, 8.0], rel=0.07)
    assert set(table.columns) >= {
        "alpha",
        "dim_lo",
        "dim_hi",
        "n_points",
        "n_sizes",
        "n_clusters",
        "method",
        "quantile",
        "diagnostics",
    }

    broken = frame.copy()
    broken.loc[broken["d"] == 4, "loss"] = np.nan
    with pytest.raises(UserError, match="group d=4: column 'loss' has 40 NaN"):
        fits.fit_groups(broken, "N", "loss", group=["d"])


def test_parse_filters_converts_to_column_types():
    frame = pd.DataFrame(
        {
            "d": [2, 4, 4],
            "lr": [0.1, 0.001, 0.001],
            "P": [np.inf, 10.0, np.inf],
            "opt": ["adam", "sgd", "adam"],
            "aug": [True, False, True],
        }
    )
    assert parse_filters(["d=4"], frame).index.tolist() == [1, 2]
    assert parse_filters(["lr=1e-3", "opt=adam"], frame).index.tolist() == [2]
    assert parse_filters(["P=inf"], frame).index.tolist() == [0, 2]
    assert parse_filters(["aug=false"], frame).index.tolist() == [1]
    assert parse_filters([], frame).equals(frame)
    for bad, pattern in [
        ("d", "not COL=VALUE"),
        ("width=3", "no column 'width'"),
        ("d=2.5", "integers"),
        ("d=x", "numbers"),
        ("aug=maybe", "true/false"),
        ("d=3", "matches no rows; 'd' holds: 2, 4"),
    ]:
        with pytest.raises(UserError, match=pattern):
            parse_filters([bad], frame)


# ------------------------------------------------------------------ the CLI


def cli_table(tmp_path, suffix):
    frame = pd.concat(
        [power_law_table(slope=-0.5, seed=11).assign(d=8), power_law_table(slope=-1.0, seed=12).assign(d=4)]
    )
    # Three epochs per run; only the last is on the law, earlier ones are 2x and 4x higher.
    frame = pd.concat([frame.assign(epoch=e, loss=frame["loss"] * 2.0 ** (2 - e)) for e in range(3)])
    path = tmp_path / f"runs.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return frame, path


REQUIRED_KEYS = {
    "group",
    "slope",
    "intercept",
    "dim",
    "ci",
    "n_points",
    "alpha",
    "dim_ci",
    "method",
    "quantile",
    "n_sizes",
    "n_clusters",
    "diagnostics",
}


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_cli_json_end_to_end(tmp_path, capsys, suffix):
    frame, path = cli_table(tmp_path, suffix)
    code = main(
        [
            "fit",
            str(path),
            "--x",
            "N",
            "--y",
            "loss",
            "--group",
            "d",
            "--run",
            "seed",
            "--epoch",
            "epoch",
            "--bootstrap",
            "200",
            "--json",
        ]
    )
    assert code == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["group"] for r in records] == [{"d": 4}, {"d": 8}]
    final = frame[frame["epoch"] == 2]
    for record, d in zip(records, [4, 8]):
        assert REQUIRED_KEYS <= set(record)
        expected = fits.fit_power_law(final[final["d"] == d], "N", "loss", cluster="seed", bootstrap=200)
        assert record["slope"] == pytest.approx(expected.slope, rel=1e-9)
        assert record["intercept"] == pytest.approx(expected.intercept, rel=1e-9)
        assert record["ci"] == pytest.approx(list(expected.ci), rel=1e-9)
        assert record["dim"] == pytest.approx(4 / abs(record["slope"]))
        assert record["n_points"] == 40 and record["n_sizes"] == 8 and record["n_clusters"] == 5
        assert record["method"] == "ols" and record["quantile"] is None
    assert records[0]["dim"] == pytest.approx(4.0, rel=0.07)
    assert records[1]["dim"] == pytest.approx(8.0, rel=0.07)


def test_cli_quantile_filter_and_epoch_rules(tmp_path, capsys):
    frame, path = cli_table(tmp_path, "csv")
    base = ["fit", str(path), "--x", "N", "--y", "loss", "--filter", "d=8", "--run", "seed", "--json"]
    assert main(base + ["--quantile", "0.5", "--epoch", "epoch"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["group"] == {} and record["method"] == "quantile" and record["quantile"] == 0.5
    assert record["slope"] == pytest.approx(-0.5, abs=0.04)
    assert record["n_points"] == 40

    # Without --epoch the step column is found by name and each run's final row is fitted (never a
    # silent pool of every step); --epoch-rule all pools them on request.
    assert main(base) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["n_points"] == 40
    assert "fitted each run's final row by 'epoch'" in captured.err
    assert main(base + ["--epoch-rule", "all"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n_points"] == 120
    # best picks the lowest loss of each run, which here is its final epoch.
    assert main(base + ["--epoch-rule", "best"]) == 0
    best = json.loads(capsys.readouterr().out)[0]
    final = fits.fit_power_law(frame[(frame["epoch"] == 2) & (frame["d"] == 8)], "N", "loss")
    assert best["slope"] == pytest.approx(final.slope, rel=1e-9)


def test_cli_readable_table(tmp_path, capsys):
    _, path = cli_table(tmp_path, "parquet")
    assert main(["fit", str(path), "--x", "N", "--y", "loss", "--group", "d", "--epoch", "epoch", "--run", "seed"]) == 0
    out = capsys.readouterr().out
    assert "d=4" in out and "d=8" in out and "slope" in out
    assert "least squares" in out
    # the footer names what the bootstrap resamples
    fit = ["fit", str(path), "--x", "N", "--y", "loss", "--group", "d", "--bootstrap", "20"]
    assert main([*fit, "--epoch", "epoch", "--run", "seed"]) == 0
    assert "bootstrap over runs (seed), 20 draws" in capsys.readouterr().out
    assert main([*fit, "--filter", "epoch=2"]) == 0  # one row per run: rows are runs
    assert "bootstrap over single rows (no --run" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--x", "width", "--y", "loss"], "missing column.*width"),
        (["--x", "N", "--y", "loss", "--filter", "depth"], "not COL=VALUE"),
        (["--x", "N", "--y", "loss", "--filter", "d=3"], "matches no rows"),
        (["--x", "N", "--y", "loss", "--epoch", "epoch", "--epoch-rule", "last"], "unknown epoch rule"),
        (["--x", "N", "--y", "loss", "--epoch-rule", "final"], "needs the epoch column"),
        # resampling single epochs of a run as independent rows would give far too narrow CIs
        (
            ["--x", "N", "--y", "loss", "--epoch", "epoch", "--epoch-rule", "all", "--bootstrap", "20"],
            "needs --run COL .* resamples whole runs",
        ),
        # the same with the step column found by name (it once slipped through without --epoch)
        (
            ["--x", "N", "--y", "loss", "--epoch-rule", "all", "--bootstrap", "20"],
            "needs --run COL .* resamples whole runs",
        ),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, args, pattern):
    _, path = cli_table(tmp_path, "csv")
    assert main(["fit", str(path), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scalinglab fit: error:")
    assert __import__("re").search(pattern, lines[0])


def test_cli_nan_and_missing_file(tmp_path, capsys):
    frame, path = cli_table(tmp_path, "csv")
    frame.loc[frame.index[:3], "loss"] = np.nan
    frame.to_csv(path, index=False)
    assert main(["fit", str(path), "--x", "N", "--y", "loss", "--group", "d", "--epoch-rule", "all"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN" in err[0] and "'loss'" in err[0]

    assert main(["fit", str(tmp_path / "absent.parquet"), "--x", "N", "--y", "loss"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


def test_cli_joint_law_calls_scalinglab_joint(tmp_path, capsys, monkeypatch):
    calls = []

    class Result:
        def to_dict(self):
            return {"alpha": 0.3, "beta": float("nan")}

    def fit_joint(frame, **kwargs):
        calls.append((len(frame), kwargs))
        return Result()

    monkeypatch.setitem(sys.modules, "scalinglab.laws.joint.fit", types.SimpleNamespace(fit_joint=fit_joint))
    frame, path = cli_table(tmp_path, "csv")
    frame = frame.assign(P=frame["d"] * 100)
    frame.to_csv(path, index=False)
    code = main(
        [
            "fit",
            str(path),
            "--law",
            "joint",
            "--n",
            "N",
            "--p",
            "P",
            "--y",
            "loss",
            "--run",
            "seed",
            "--epoch",
            "epoch",
            "--method",
            "chinchilla",
            "--bootstrap",
            "20",
            "--seed",
            "3",
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"alpha": 0.3, "beta": None}
    expected = {"n": "N", "p": "P", "y": "loss", "method": "chinchilla", "bootstrap": 20, "cluster": ["seed"]}
    assert calls == [(80, {**expected, "seed": 3, "confidence": 0.95})]


def test_cli_broken_law_recovers_a_known_break_per_group(tmp_path, capsys):
    """`--law broken`: Caballero et al.'s one-break law per group, on two seeds of a known curve."""
    from scalinglab.laws.broken_power_law import BrokenPowerLawFit

    truth = {"a": 0.1, "b": 5.0, "c0": 0.2, "c1": 0.6, "d1": 1000.0, "f1": 0.3}
    x = np.geomspace(10, 1e5, 30)
    curve = BrokenPowerLawFit(**truth, rms_relative_error=0.0, n_points=0).predict(x)
    rng = np.random.default_rng(1)
    rows = [
        {"task": task, "seed": seed, "N": n, "loss": y * (2.0 if task == "b" else 1.0) * math.exp(0.01 * rng.normal())}
        for task in ("a", "b")
        for seed in (0, 1)
        for n, y in zip(x, curve)
    ]
    path = tmp_path / "curve.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "broken", "--x", "N", "--y", "loss", "--group", "task", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [record["group"] for record in out] == [{"task": "a"}, {"task": "b"}]
    for record, scale in zip(out, (1.0, 2.0)):
        assert record["n_points"] == 60 and record["epoch_rule"] == "all"
        assert record["c0"] == pytest.approx(truth["c0"], abs=0.05)
        assert record["c0"] + record["c1"] == pytest.approx(truth["c0"] + truth["c1"], abs=0.1)
        assert record["d1"] == pytest.approx(truth["d1"], rel=0.3)
        assert record["a"] == pytest.approx(scale * truth["a"], rel=0.1)
    # the two tasks at one N, no step column: pooled only on request
    assert main(["fit", str(path), "--law", "broken", "--x", "N", "--y", "loss"]) == 2
    assert "--epoch-rule all" in capsys.readouterr().err
    assert main(["fit", str(path), "--law", "broken", "--x", "N", "--y", "loss", "--epoch-rule", "all"]) == 0
    assert "break at x =" in capsys.readouterr().out
    assert main(["fit", str(path), "--law", "broken", "--x", "N", "--y", "loss", "--bootstrap", "10"]) == 2
    assert "--law broken does not use --bootstrap; drop it" in capsys.readouterr().err
