"""Config validation: every bad value is a one-line error that names its key."""

import pytest

from scalinglab.core.config import load, validate
from scalinglab.core.errors import UserError


def error_of(config) -> str:
    with pytest.raises(UserError) as info:
        validate(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_filled_in():
    config = validate({})
    ts = config["teacher_student"]
    assert ts["embedding_width"] == 9
    assert ts["schedule"]["kind"] == "onecycle"
    assert config["engine"]["threads"] == 1


def test_embedded_default_is_valid():
    config = load("config/config.yaml")
    assert all(3 <= d <= 8 for d in config["teacher_student"]["d"])


@pytest.mark.parametrize(
    "config, key",
    [
        ({"teacher_studnet": {}}, "teacher_studnet"),
        ({"teacher_student": {"widht": [3]}}, "teacher_student.widht"),
        ({"teacher_student": {"d": "4"}}, "teacher_student.d"),
        ({"teacher_student": {"d": [4.5]}}, "teacher_student.d[0]"),
        ({"teacher_student": {"d": []}}, "teacher_student.d"),
        ({"teacher_student": {"d": [0]}}, "teacher_student.d[0]"),
        ({"teacher_student": {"widths": [10, 0]}}, "teacher_student.widths[1]"),
        ({"teacher_student": {"widths": [-3]}}, "teacher_student.widths[0]"),
        ({"teacher_student": {"seeds": []}}, "teacher_student.seeds"),
        ({"teacher_student": {"train_sizes": ["infinite"]}}, "teacher_student.train_sizes[0]"),
        (
            {"teacher_student": {"schedule": {"kind": "onecycle", "steps": 10, "batch": 0, "max_lr": 0.1}}},
            "teacher_student.schedule.batch",
        ),
        ({"teacher_student": {"schedule": {"kind": "cosine"}}}, "teacher_student.schedule"),
        ({"teacher_student": {"test_size": 100}}, "teacher_student.test_size"),
        ({"device": "tpu"}, "device"),
        ({"engine": {"threads": "two"}}, "engine.threads"),
        (
            {"teacher_student": {"schedule_by_d": {"9": {"kind": "onecycle", "steps": 9, "batch": 2, "max_lr": 0.1}}}},
            "teacher_student.schedule_by_d",
        ),
    ],
)
def test_bad_values_name_their_key(config, key):
    assert key in error_of(config)


def test_d_at_or_above_width_warns_that_the_width_is_measured():
    with pytest.warns(UserWarning, match="embedding_width"):
        validate({"teacher_student": {"d": [4, 12]}})


def test_schedule_by_d_keys_become_ints():
    sched = {"kind": "onecycle", "steps": 9, "batch": 2, "max_lr": 0.1}
    config = validate({"teacher_student": {"d": [3, 4], "schedule_by_d": {"4": sched}}})
    assert config["teacher_student"]["schedule_by_d"] == {4: sched}


def test_yaml_errors_are_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("teacher_student: {d: [3, 4\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load(path)
    with pytest.raises(UserError, match="no such file"):
        load(tmp_path / "missing.yaml")


def test_a_preset_runs_only_the_experiments_it_names():
    from scalinglab.core.config import only_named_stages, stage_names

    stages = stage_names()
    assert {"teacher_student", "dimension", "perceptron", "images", "deep_nets", "joint", "random_features"} <= set(
        stages
    )
    config = validate(only_named_stages({"perceptron": {"N": 50}, "images": {"enabled": False}}))
    enabled = {stage for stage in stages if config[stage]["enabled"]}
    assert enabled == {"perceptron"}
    assert config["perceptron"]["N"] == 50 and config["perceptron"]["alphas"]  # named: schema defaults fill it
