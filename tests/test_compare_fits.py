"""tools/compare_fits.py, which checks that a refactoring changed no fitted number: it passes
identical runs and names every difference, down to the last bit of a float."""

from __future__ import annotations

import json
import runpy

from workflow_helpers import REPO

compare_fits = runpy.run_path(str(REPO / "tools" / "compare_fits.py"))


def write(results, name, value):
    path = results / "fits" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


def test_identical_runs_pass_and_every_difference_is_named(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    fit = {"d": 4, "alpha": 0.7284512345678901, "ci": [0.5, None], "notes": ["x"]}
    for results in (a, b):
        write(results, "teacher_student.json", [fit])
        write(results, "deep_nets/model~cnn/dataset~digits.json", {"gamma1": 0.2})
    assert compare_fits["main"]([str(a), str(b)]) == 0
    assert "2 fits files compared: identical" in capsys.readouterr().out
    write(b, "teacher_student.json", [{**fit, "alpha": 0.7284512345678902, "ci": [0.5, 1.0]}])
    write(b, "joint.json", {})
    assert compare_fits["main"]([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "teacher_student.json[0].alpha: 0.7284512345678901 against 0.7284512345678902" in out
    assert "teacher_student.json[0].ci[1]: None against 1.0" in out
    assert "joint.json: only in" in out
    assert compare_fits["main"]([str(tmp_path / "missing"), str(b)]) == 2
