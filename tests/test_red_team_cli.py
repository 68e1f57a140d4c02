"""Red-team findings (round two) through `scalinglab <command>`: each case, once a silent wrong number,
a traceback or a misleading message, is now a one-line error or a right answer with a note. The ids
(SW silent wrong, TB traceback, MM misleading message, DL data loss) are those of the closing note."""

from __future__ import annotations

import errno
import json

import numpy as np
import pandas as pd
import pytest
from test_bad_input import assert_one_line_error

from scalinglab.cli.main import main

RNG = np.random.default_rng(0)


def runs_table() -> pd.DataFrame:
    """d in {2, 3}, N in {10, 20, 40, 80}, 2 seeds, steps 1-3: test_loss = N^-0.5 (1 + 1% noise) / step."""
    rows = [
        {"d": d, "N": n, "seed": s, "step": t, "test_loss": n**-0.5 * (1 + 0.01 * RNG.normal()) / t}
        for d in (2, 3)
        for n in (10, 20, 40, 80)
        for s in (0, 1)
        for t in (1, 2, 3)
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(capsys, argv, expect):
    code, out, err = run(capsys, argv)
    return assert_one_line_error(code, out, err, expect)


def fit_json(capsys, argv):
    code, out, err = run(capsys, ["fit", *argv, "--json"])
    assert code == 0, err
    return json.loads(out), err


# ---------------------------------------------------------------- fit


def test_sw5_diverged_runs_are_left_out_with_a_note(folder, capsys):
    table = runs_table().assign(status="ok")
    clean, _ = fit_json(capsys, [*_write(table, "ok.parquet"), "--x", "N", "--y", "test_loss", "--group", "d"])
    bad = (table["d"] == 2) & (table["N"] == 80) & (table["seed"] == 1)
    table.loc[bad, "status"] = "diverged"
    table.loc[bad & (table["step"] == 3), "test_loss"] = 50.0
    fits, err = fit_json(capsys, [*_write(table, "div.parquet"), "--x", "N", "--y", "test_loss", "--group", "d"])
    assert "left out 3 of 48 rows whose status is not 'ok'" in err
    assert fits[0]["n_points"] == 7 and fits[0]["slope"] == pytest.approx(clean[0]["slope"], abs=0.02)


def test_sw6_best_tells_seeds_apart(folder, capsys):
    path = _write(runs_table(), "runs.parquet")
    fits, err = fit_json(capsys, [*path, "--x", "N", "--y", "test_loss", "--group", "d", "--epoch-rule", "best"])
    assert fits[0]["n_points"] == 8 and "told apart by 'seed'" in err  # each run's best, not the luckiest per N


def test_sw7_runs_that_end_early_are_noted(folder, capsys):
    table = runs_table()
    table = table[~((table["N"] == 80) & (table["seed"] == 1) & (table["step"] == 3))]
    _, err = fit_json(capsys, [*_write(table, "short.parquet"), "--x", "N", "--y", "test_loss", "--group", "d"])
    assert "2 of 16 runs end before step 3" in err


def test_sw8_a_text_step_column_is_refused(folder, capsys):
    table = runs_table().assign(step=lambda f: f["step"].astype(str))
    one_line(
        capsys, ["fit", *_write(table, "s.parquet"), "--x", "N", "--y", "test_loss", "--group", "d"], "not numeric"
    )


def test_sw9_filters_on_large_integers_are_exact(folder, capsys):
    table = runs_table().query("step == 3 and d == 2").assign(seed=lambda f: f["seed"] + 2_000_000_000)
    fits, _ = fit_json(
        capsys, [*_write(table, "big.csv"), "--x", "N", "--y", "test_loss", "--filter", "seed=2000000000"]
    )
    assert fits[0]["n_points"] == 4


def test_sw11_joint_refuses_what_it_ignores_and_honours_confidence(folder, capsys):
    path = _write(runs_table().assign(P=lambda f: f["d"] * 100), "joint.parquet")
    base = ["fit", *path, "--law", "joint", "--n", "N", "--p", "P", "--y", "test_loss"]
    one_line(capsys, [*base, "--quantile", "0.5"], "--law joint does not use --quantile; drop it")
    one_line(capsys, [*base, "--x", "N"], "--law joint does not use --x")
    one_line(capsys, [*base, "--confidence", "7"], "confidence 7")
    code, out, err = run(capsys, [*base, "--confidence", "0.5", "--json"])
    assert code == 0, err and json.loads(out)["confidence"] == 0.5


def test_mm7_a_joint_fit_error_names_its_group(folder, capsys):
    last = runs_table().query("step == 3")
    group_a = pd.concat([last.query("d == 2").assign(P=100), last.query("d == 2").assign(P=300)]).assign(g="a")
    group_b = last.query("d == 3").assign(P=300, g="b")  # one P only: no law in P
    table = pd.concat([group_a, group_b])
    argv = ["fit", *_write(table, "j.parquet"), "--law", "joint", "--n", "N", "--p", "P", "--y", "test_loss"]
    one_line(capsys, [*argv, "--group", "g"], "group g=b: joint fit needs")


def test_sw12_sw13_a_rising_or_flat_curve_says_so(folder, capsys):
    rising = pd.DataFrame({"N": [10, 20, 40, 80], "loss": [1.0, 1.3, 1.7, 2.2]})
    fits, _ = fit_json(capsys, [*_write(rising, "up.csv"), "--x", "N", "--y", "loss"])
    assert any("slope is positive" in d for d in fits[0]["diagnostics"])
    flat = pd.DataFrame({"N": np.geomspace(10, 1e4, 10), "loss": 1.0 + 1e-3 * RNG.normal(size=10)})
    fits, _ = fit_json(capsys, [*_write(flat, "flat.csv"), "--x", "N", "--y", "loss"])
    assert any("includes 0: no clear dependence on N" in d for d in fits[0]["diagnostics"])


def test_degenerate_fits_exit_non_zero(folder, capsys):
    two = pd.DataFrame({"N": [10, 100], "loss": [1.0, 0.3]})
    one_line(capsys, ["fit", *_write(two, "two.csv"), "--x", "N", "--y", "loss"], "2 points")


def test_few_distinct_resamples_print_no_interval(folder, capsys):
    table = runs_table().query("step == 3 and d == 2")
    argv = ["fit", *_write(table, "r.parquet"), "--x", "N", "--y", "test_loss", "--run", "seed", "--bootstrap", "100"]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert "CI n/a: 3 distinct resamples" in out and "95% CI" not in out.split("\n")[1]


def test_sw19_a_tiny_bootstrap_is_refused(folder, capsys):
    path = _write(runs_table(), "runs.parquet")
    one_line(capsys, ["fit", *path, "--x", "N", "--y", "test_loss", "--bootstrap", "2"], "is noise")
    one_line(capsys, ["dimension", _points("p.npy"), "--bootstrap", "1"], "is noise")
    one_line(capsys, ["dimension", _points("p.npy"), "--bootstrap", "100000000"], "more than the 1,000,000 allowed")


def test_tb1_group_by_an_infinite_p_gives_json(folder, capsys):
    table = runs_table().assign(P=np.inf)
    fits, _ = fit_json(capsys, [*_write(table, "inf.parquet"), "--x", "N", "--y", "test_loss", "--group", "d", "P"])
    assert fits[0]["group"] == {"d": 2, "P": "inf"}


def test_mm12_maximize_without_best_is_refused(folder, capsys):
    path = _write(runs_table(), "runs.parquet")
    one_line(capsys, ["fit", *path, "--x", "N", "--y", "test_loss", "--maximize"], "--maximize only changes")


# ---------------------------------------------------------------- tables as text


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        ("noheader.csv", "10,0.5\n20,0.4\n40,0.3\n", "its first row holds numbers"),  # was: silently lost a row
        ("semi.csv", "N;loss\n10;0.5\n20;0.4\n", "seems to use ';' as separator"),  # MM4
        ("twice.csv", "N,loss\n10,0.5\n20,0.4\nN,loss\n40,0.3\n", "line 4 repeats the header"),  # MM3
    ],
)
def test_text_tables_with_no_header_another_separator_or_a_repeated_header(folder, capsys, name, text, expect):
    (folder / name).write_text(text)
    one_line(capsys, ["fit", name, "--x", "N", "--y", "loss"], expect)


# ---------------------------------------------------------------- dimension


def test_sw1_integer_columns_and_a_saved_index_are_not_coordinates(folder, capsys):
    points = RNG.normal(size=(400, 3))
    frame = pd.DataFrame(points, columns=list("abc")).assign(label=RNG.integers(0, 9, 400))
    frame.to_csv("pts_index.csv")  # pandas writes its index as "Unnamed: 0"
    code, out, err = run(capsys, ["dimension", "pts_index.csv", "--bootstrap", "0", "--estimator", "twonn", "--json"])
    assert code == 0, err
    assert "float column(s) a, b, c; left out Unnamed: 0, label" in err
    direct, _, _ = run(capsys, ["dimension", _points("p.npy", points), "--bootstrap", "0", "--estimator", "twonn"])
    code, out2, _ = run(capsys, ["dimension", "pts_index.csv", "--bootstrap", "0", "--estimator", "twonn", "--json"])
    code, out3, _ = run(capsys, ["dimension", "p.npy", "--bootstrap", "0", "--estimator", "twonn", "--json"])
    assert json.loads(out2)[0]["dimension"] == pytest.approx(json.loads(out3)[0]["dimension"], rel=1e-9)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_tb3_mm2_huge_and_tiny_coordinates_give_the_same_estimate(folder, capsys, scale):
    points = RNG.normal(size=(300, 3))
    argv = ["--bootstrap", "0", "--k", "5", "--json"]
    code, out, err = run(capsys, ["dimension", _points("unit.npy", points), *argv])
    code2, out2, err2 = run(capsys, ["dimension", _points("scaled.npy", points * scale), *argv])
    assert code == code2 == 0, err2
    for a, b in zip(json.loads(out), json.loads(out2)):
        assert b["dimension"] == pytest.approx(a["dimension"], rel=1e-6)


def test_tb4_an_array_without_coordinates(folder, capsys):
    np.save("zero.npy", np.zeros((100, 0)))
    one_line(capsys, ["dimension", "zero.npy"], "no coordinates")


def test_mm1_a_whitespace_text_file_of_points(folder, capsys):
    np.savetxt("pts.txt", RNG.normal(size=(200, 2)))
    code, out, err = run(capsys, ["dimension", "pts.txt", "--bootstrap", "0", "--k", "5", "--json"])
    assert code == 0, err and json.loads(out)[0]["n_points"] == 200


# ---------------------------------------------------------------- implicit-bias


@pytest.fixture
def perceptron_files(folder):
    from scalinglab.perceptron.fixed_norm import sweep
    from scalinglab.perceptron.stage import lambda_grid

    paths = []
    for alpha in (4.0, 8.0, 16.0):
        path = folder / f"alpha~{alpha:g}.parquet"
        sweep(60, [alpha], np.sqrt(lambda_grid(alpha, 1e-4, 4.0, 12)), [0, 1]).to_parquet(path)
        paths.append(path)
    return paths


def test_sw2_nan_errors_are_refused(perceptron_files, capsys):
    frame = pd.read_parquet(perceptron_files[0])
    frame.loc[frame.index[:3], "rel_error"] = np.nan
    frame.to_parquet(perceptron_files[0])
    argv = ["implicit-bias", *perceptron_files, "--error", "rel_error"]
    one_line(capsys, argv, "column 'rel_error' has 3 NaN, infinite or non-numeric value(s)")


def test_sw3_a_log_column_without_norm_is_log(perceptron_files, capsys):
    argv = ["implicit-bias", *perceptron_files, "--error", "rel_error", "--norm", "log_norm"]
    one_line(capsys, argv, "looks like a logarithm: add --norm-is-log")


def test_sw4_files_of_another_configuration_are_refused(perceptron_files, folder, capsys):
    from scalinglab.perceptron.fixed_norm import sweep
    from scalinglab.perceptron.stage import lambda_grid

    stale = folder / "alpha~16_N30.parquet"  # N = 30, alpha = 32: P = 960, like N = 60, alpha = 16
    sweep(30, [32.0], np.sqrt(lambda_grid(32.0, 1e-4, 4.0, 12)), [0, 1]).to_parquet(stale)
    one_line(capsys, ["implicit-bias", *perceptron_files, stale, "--error", "rel_error"], "models of different N")


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--bootstrap-seed", "-3"], "--bootstrap-seed -3 must be >= 0"),  # TB5
        (["--bootstrap", "-3"], "--bootstrap -3 is negative"),  # MM5
        (["--bootstrap", "5"], "is noise"),
        (["--min-seeds", "0"], "--min-seeds 0 must be at least 1"),
        (["--min-seeds", "5"], "min_seeds 5: give 1 to 2"),
    ],
)
def test_mm5_robust_options_are_checked(perceptron_files, capsys, extra, expect):
    one_line(capsys, ["implicit-bias", *perceptron_files, "--error", "rel_error", *extra], expect)


# ---------------------------------------------------------------- imports and writes


def test_dl3_an_import_does_not_replace_a_table_it_did_not_write(folder, capsys):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder / "logs" / "run"))
    writer.add_scalar("loss", 1.0, 0)
    writer.close()
    victim = _write(runs_table(), "victim.parquet")[0]
    before = (folder / victim).read_bytes()
    one_line(capsys, ["import-tensorboard", "logs", "-o", victim], "was not written by scalinglab import-tensorboard")
    assert (folder / victim).read_bytes() == before
    assert main(["import-tensorboard", "logs", "-o", "mine.parquet"]) == 0
    assert main(["import-tensorboard", "logs", "-o", "mine.parquet"]) == 0  # its own earlier output: replaced
    assert main(["import-tensorboard", "logs", "-o", victim, "--force"]) == 0


def test_tb7_a_full_disk_is_one_line_and_keeps_the_old_file(folder, monkeypatch):
    from scalinglab.core import io
    from scalinglab.core.errors import UserError

    io.write_text(folder / "table.json", "old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "replace", full)
    with pytest.raises(UserError, match="no space left on the device while writing it"):
        io.write_text(folder / "table.json", "new")
    assert (folder / "table.json").read_text() == "old"
    assert [p.name for p in folder.iterdir()] == ["table.json"]  # no temporary left behind


# ---------------------------------------------------------------- helpers


def _write(frame: pd.DataFrame, name: str) -> list[str]:
    if name.endswith(".csv"):
        frame.to_csv(name, index=False)
    else:
        frame.to_parquet(name)
    return [name]


def _points(name: str, points=None) -> str:
    np.save(name, RNG.normal(size=(200, 3)) if points is None else points)
    return name


def test_report_takes_your_own_table_through_fits_figure_and_summary(folder, capsys):
    """`scalinglab report`: each run's final row, a fit per group with each size's runs resampled, a
    figure with a PDF twin and a summary; the slope recovered (the table's truth: -0.5)."""
    _write(runs_table(), "mine.parquet")
    code, out, err = run(
        capsys,
        [
            "report",
            "mine.parquet",
            "--x",
            "N",
            "--y",
            "test_loss",
            "--group",
            "d",
            "--run",
            "seed",
            "--bootstrap",
            "200",
            "-o",
            "rep",
        ],
    )
    assert code == 0, err
    fits = pd.read_csv(folder / "rep" / "fits.tsv", sep="\t")
    assert list(fits["d"]) == [2, 3] and (fits["n_points"] == 8).all()
    assert fits["slope"].tolist() == pytest.approx([-0.5, -0.5], abs=0.02)
    assert (fits["ci_lo"] < fits["slope"]).all() and (fits["ci_hi"] > fits["slope"]).all()
    assert (fits["ci_lo"] > -0.55).all() and (fits["ci_hi"] < -0.45).all()
    assert (folder / "rep" / "scaling.png").stat().st_size and (folder / "rep" / "scaling.pdf").stat().st_size
    summary = (folder / "rep" / "summary.md").read_text()
    assert "| d = 2 | -0.5" in summary and "each run's final row by 'step'" in summary
