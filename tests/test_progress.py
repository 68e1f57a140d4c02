"""core/progress.py: a rate and an ETA at least every 5% of the work (or 30 s), one line at the end."""

from __future__ import annotations

import io
import re

from scalinglab.core.progress import Progress


def test_lines_every_five_percent_with_rate_and_eta_then_done():
    out = io.StringIO()
    watch = Progress("d=4 n=24", 1000, "steps", stream=out)
    for step in range(1, 1001):
        watch.update(step, lambda: "test MSE 0.01")
    watch.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 20  # 5%, 10%, ..., 95%, then done
    assert re.fullmatch(r"d=4 n=24: 50/1,000 steps \(5%\), [\d,.e+]+ steps/s, ETA \d+ s; test MSE 0.01", lines[0])
    assert re.fullmatch(r"d=4 n=24: done, 1,000 steps in \d+ s, [\d,.e+]+ steps/s", lines[-1])


def test_a_resumed_run_counts_only_its_own_work_and_a_silent_one_prints_nothing(capsys):
    out = io.StringIO()
    watch = Progress("job", 100, "epochs", done=60, stream=out)
    watch.update(66)
    assert "66/100 epochs (66%)" in out.getvalue()
    quiet = Progress(None, 100)
    quiet.update(50)
    quiet.finish()
    assert capsys.readouterr().err == ""


def test_the_time_also_triggers_a_line(monkeypatch):
    clock = iter([0.0, 1.0, 31.0, 32.0])
    monkeypatch.setattr("scalinglab.core.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    watch = Progress("slow", 10_000, stream=out)  # started at t = 0
    watch.update(1)  # t = 1: under 5% and under 30 s
    watch.update(2)  # t = 31: 30 s passed
    assert out.getvalue().count("\n") == 1 and "2/10,000 steps" in out.getvalue()
