"""Issue 12: a hostile trainer_state.json never crashes a scan. Bad fields and entries are skipped with a short
warning, the good values around them are kept exactly; a file that cannot be parsed gives a warning and no log (and
the next source is tried). Naming such a file with --log is a UserError."""

import json

import pytest

from dpo_doctor.errors import UserError
from dpo_doctor.trainlog import load_train_log

GOOD = {"step": 10, "epoch": 0.5, "loss": 0.6, "rewards/margins": 0.25}


def write(tmp_path, text):
    (tmp_path / "trainer_state.json").write_text(text, encoding="utf-8")
    return load_train_log(tmp_path)


def state(history):
    return json.dumps({"global_step": 20, "log_history": history})


def test_text_nan_and_inf_are_read_as_floats_with_a_warning(tmp_path):
    log = write(tmp_path, state([{"step": 10, "loss": "nan", "rewards/margins": "Infinity", "grad_norm": "-inf"},
                                 {"step": 20, "loss": "0.5"}]))
    row = log.frame.row(0, named=True)
    assert row["loss"] != row["loss"]  # NaN kept: a NaN loss is a finding
    assert row["rewards/margins"] == float("inf") and row["grad_norm"] == float("-inf")
    assert log.frame["loss"].to_list()[1] == 0.5
    assert log.warnings == ("trainer_state.json: read 4 numbers written as text (loss at step 10: 'nan'; "
                            "rewards/margins at step 10: 'Infinity'; grad_norm at step 10: '-inf', ...)",)


def test_lists_dicts_booleans_nulls_and_words_are_skipped(tmp_path):
    bad = {"step": 10, "loss": 0.6, "rewards/chosen": [1, 2], "rewards/rejected": {"a": 1},
           "rewards/accuracies": True, "grad_norm": None, "logps/chosen": "oops", "rewards/margins": 0.25}
    log = write(tmp_path, state([bad]))
    assert log.frame.columns == ["step", "epoch", "split", "loss", "rewards/margins"]
    assert log.frame.row(0) == (10, None, "train", 0.6, 0.25)
    text = " | ".join(log.warnings)
    assert "skipped 4 non-numeric values (rewards/chosen at step 10: [1, 2]" in text
    assert "skipped 1 null values (grad_norm at step 10)" in text


def test_entries_that_are_not_objects_are_skipped(tmp_path):
    log = write(tmp_path, state(["text", 3, None, [GOOD], GOOD]))
    assert log.frame["loss"].to_list() == [0.6] and log.frame["step"].to_list() == [10]
    assert log.warnings[0].startswith("trainer_state.json: skipped 4 log_history entries that are not objects")


@pytest.mark.parametrize("text, why", [
    ('{"log_history": [{"step": 1, "loss": 0.6}, {"step": 2, "lo', "is not valid JSON"),  # cut off mid-write
    ("", "is not valid JSON"),
    ('{"log_history": {"step": 1, "loss": 0.6}}', "has no log_history list (found dict)"),
    ('{"log_history": "[]"}', "has no log_history list (found str)"),
    ("[1, 2, 3]", "is not a trainer state (a JSON object with log_history; found list)"),
    ("null", "found NoneType"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_unparseable_state_is_a_warning_and_no_log(tmp_path, text, why):
    log = write(tmp_path, text)
    assert log.frame is None and log.source is None
    assert len(log.warnings) == 1 and why in log.warnings[0] and "trainer_state.json" in log.warnings[0]


def test_non_utf8_state_is_a_warning(tmp_path):
    (tmp_path / "trainer_state.json").write_bytes(b'{"log_history": [{"loss": 0.6, "x": "\xff\xfe"}]}')
    log = load_train_log(tmp_path)
    assert log.frame is None and "is not UTF-8 text" in log.warnings[0]


def test_bad_steps_and_huge_numbers(tmp_path):
    history = [{"step": "20", "loss": 0.5}, {"step": 30.0, "loss": 0.4}, {"step": "ten", "loss": 0.3},
               {"step": [1], "loss": 0.2}, {"step": 1e400, "loss": 0.1}, {"step": 40, "loss": 10 ** 400}]
    text = state(history).replace("Infinity", "1e400")  # json.dumps writes 1e400 as Infinity; keep the literal
    log = write(tmp_path, text)
    assert log.frame["step"].to_list() == [20, 30, None, None, None]  # step 40 kept no value: row dropped
    assert log.frame["loss"].to_list() == [0.5, 0.4, 0.3, 0.2, 0.1]
    text = " | ".join(log.warnings)
    assert "bad step values" in text and "non-numeric values" in text and "loss at step 40" in text


def test_broken_state_falls_back_to_the_next_source_and_keeps_the_warning(tmp_path):
    (tmp_path / "trainer_state.json").write_text('{"log_history": [{"step": 1')
    (tmp_path / "trainer_log.jsonl").write_text('{"current_steps": 5, "loss": 0.69, "accuracy": 0.5}\n')
    log = load_train_log(tmp_path)
    assert log.source == "llama_factory" and log.path == tmp_path / "trainer_log.jsonl"
    assert log.frame["rewards/accuracies"].to_list() == [0.5]
    assert "trainer_state.json is not valid JSON" in log.warnings[0]


def test_a_split_key_inside_an_entry_does_not_confuse_the_table(tmp_path):
    log = write(tmp_path, state([{**GOOD, "split": "validation"}, {"step": 10, "eval_loss": 0.7}]))
    assert log.frame["split"].to_list() == ["train", "eval"] and log.frame["loss"].to_list() == [0.6, 0.7]


def test_naming_a_broken_state_with_log_is_a_user_error(tmp_path):
    path = tmp_path / "trainer_state.json"
    path.write_text('{"log_history": [')
    with pytest.raises(UserError, match=r"--log .*trainer_state.json: .*is not valid JSON.*Supported: "):
        load_train_log(tmp_path, log=path)
