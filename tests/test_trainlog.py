"""Training curves from hand-written trainer_state.json files of both TRL generations and LLaMA-Factory's JSONL.

Example rows are copied from the shared reference (section 1.7 for TRL >= 0.29, trl#1236 for <= 0.28)."""

import json

import polars as pl

from dpo_doctor.trainlog import detect_framework, load_train_log, read_train_log

NEW_TRAIN = {"entropy": 1.2871, "epoch": 0.32, "grad_norm": 28.41, "learning_rate": 8.9e-07,
             "logits/chosen": -1.9142, "logits/rejected": -1.8735, "logps/chosen": -318.77, "logps/rejected": -356.02,
             "loss": 0.5412, "mean_token_accuracy": 0.7013, "num_tokens": 2457600.0,
             "rewards/accuracies": 0.725, "rewards/chosen": -0.1631, "rewards/margins": 0.6289,
             "rewards/rejected": -0.792, "step": 200}
NEW_EVAL = {"epoch": 0.32, "eval_loss": 0.5873, "eval_rewards/accuracies": 0.69, "eval_rewards/margins": 0.51,
            "eval_rewards/chosen": -0.21, "eval_rewards/rejected": -0.72, "eval_logps/chosen": -301.4,
            "eval_logps/rejected": -342.9, "eval_logits/chosen": -1.93, "eval_logits/rejected": -1.88,
            "eval_entropy": 1.30, "eval_mean_token_accuracy": 0.69, "eval_runtime": 41.2,
            "eval_samples_per_second": 48.5, "eval_steps_per_second": 1.52, "step": 200}
SUMMARY = {"epoch": 1.0, "step": 625, "total_flos": 0.0, "train_loss": 0.5523, "train_runtime": 5123.4,
           "train_samples_per_second": 11.7, "train_steps_per_second": 0.122}
OLD_TRAIN = {"loss": 0.3271, "learning_rate": 2.857e-06, "rewards/chosen": 9.77, "rewards/rejected": 5.69,
             "rewards/accuracies": 1.0, "rewards/margins": 4.07, "logps/rejected": -222.7, "logps/chosen": -379.7,
             "logits/rejected": -2.20, "logits/chosen": -1.40, "epoch": 0.0, "step": 10}


def write_state(path, history, **extra):
    path.mkdir(parents=True, exist_ok=True)
    state = {"global_step": 625, "log_history": history, **extra}
    (path / "trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True))


def test_new_trl_generation(tmp_path):
    write_state(tmp_path, [NEW_TRAIN, NEW_EVAL, SUMMARY])
    df = read_train_log(tmp_path)
    assert df.height == 2  # the summary row is dropped
    assert df.columns[:3] == ["step", "epoch", "split"]
    assert df.schema["step"] == pl.Int64 and df.schema["split"] == pl.Utf8
    assert all(df.schema[c] == pl.Float64 for c in df.columns if c not in ("step", "split"))
    assert df["split"].to_list() == ["train", "eval"]
    assert df["rewards/margins"].to_list() == [0.6289, 0.51]
    assert df["loss"].to_list() == [0.5412, 0.5873]
    assert df["entropy"].to_list() == [1.2871, 1.30]
    assert df["grad_norm"].to_list() == [28.41, None]
    assert not any(c.startswith("eval_") for c in df.columns)
    assert not {"runtime", "samples_per_second", "train_runtime", "total_flos"} & set(df.columns)
    assert detect_framework(df) == "trl>=0.29"


def test_old_trl_generation(tmp_path):
    write_state(tmp_path, [OLD_TRAIN, {**OLD_TRAIN, "step": 20, "rewards/margins": 5.0}, SUMMARY])
    df = read_train_log(tmp_path)
    assert df["step"].to_list() == [10, 20]
    assert df["rewards/margins"].to_list() == [4.07, 5.0]
    assert df["logps/chosen"].to_list() == [-379.7, -379.7]
    assert detect_framework(df) == "trl<=0.28"


def test_latest_checkpoint_state_when_root_has_none(tmp_path):
    write_state(tmp_path / "checkpoint-10", [OLD_TRAIN])
    write_state(tmp_path / "checkpoint-20", [OLD_TRAIN, {**OLD_TRAIN, "step": 20}])
    write_state(tmp_path / "checkpoint-3", [OLD_TRAIN, {**OLD_TRAIN, "step": 20}, {**OLD_TRAIN, "step": 30}])
    assert read_train_log(tmp_path)["step"].to_list() == [10, 20]  # 20 > 10 > 3 numerically


def test_no_log_gives_none(tmp_path):
    assert read_train_log(tmp_path) is None
    write_state(tmp_path, [SUMMARY])
    assert read_train_log(tmp_path) is None
    assert detect_framework(None) == "unknown"


def test_malformed_state_is_a_warning_not_a_crash(tmp_path):
    """Issue 12: a broken trainer_state.json never stops a scan; the warning names the file."""
    (tmp_path / "trainer_state.json").write_text('{"log_history": [')
    log = load_train_log(tmp_path)
    assert log.frame is None and log.source is None
    assert len(log.warnings) == 1 and "trainer_state.json is not valid JSON" in log.warnings[0]
    assert read_train_log(tmp_path) is None
    (tmp_path / "trainer_state.json").write_text('{"global_step": 3}')
    assert "trainer_state.json has no log_history list" in load_train_log(tmp_path).warnings[0]


def test_llama_factory_jsonl(tmp_path):
    rows = [
        {"current_steps": 5, "total_steps": 50, "loss": 0.69, "accuracy": 0.5, "lr": 1e-6, "epoch": 0.1,
         "percentage": 10.0, "elapsed_time": "0:00:10", "remaining_time": "0:01:30"},
        {"current_steps": 10, "total_steps": 50, "eval_loss": 0.66, "epoch": 0.2, "percentage": 20.0},
    ]
    (tmp_path / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = read_train_log(tmp_path)
    assert df["step"].to_list() == [5, 10] and df["split"].to_list() == ["train", "eval"]
    assert df["loss"].to_list() == [0.69, 0.66]
    assert df["rewards/accuracies"].to_list() == [0.5, None]
    assert df["learning_rate"].to_list() == [1e-6, None]
    assert not {"current_steps", "total_steps", "percentage", "elapsed_time", "lr"} & set(df.columns)
    assert detect_framework(df, tmp_path) == "llama-factory"


def test_llama_factory_bad_line_is_skipped_with_its_number(tmp_path):
    (tmp_path / "trainer_log.jsonl").write_text('{"current_steps": 1, "loss": 0.7}\n{oops\n[1]\n')
    log = load_train_log(tmp_path)
    assert log.source == "llama_factory" and log.frame["loss"].to_list() == [0.7]
    assert any("1 lines that are not JSON (line 2)" in w for w in log.warnings)
    assert any("not JSON objects (line 3)" in w for w in log.warnings)


def test_trainer_state_preferred_over_llama_factory_jsonl(tmp_path):
    write_state(tmp_path, [OLD_TRAIN])
    (tmp_path / "trainer_log.jsonl").write_text('{"current_steps": 99, "loss": 0.7}\n')
    df = read_train_log(tmp_path)
    assert df["step"].to_list() == [10] and "rewards/chosen" in df.columns


def test_dpo_doctor_framework(tmp_path):
    write_state(tmp_path, [NEW_TRAIN])
    (tmp_path / "dpo_doctor_config.json").write_text('{"beta": 0.1}')
    assert detect_framework(read_train_log(tmp_path), tmp_path) == "dpo-doctor"


def test_writes_parquet_round_trip(tmp_path):
    write_state(tmp_path, [NEW_TRAIN, NEW_EVAL])
    df = read_train_log(tmp_path)
    df.write_parquet(tmp_path / "train_log.parquet")
    assert pl.read_parquet(tmp_path / "train_log.parquet").equals(df)


def test_discovery_and_log_reading_do_not_import_torch():
    """`dpo-doctor report`/`tui` read runs without paying torch's import time."""
    import subprocess
    import sys

    code = "import sys, dpo_doctor.discover, dpo_doctor.trainlog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dpo_doctor_framework_from_checkpoint_config(tmp_path):
    write_state(tmp_path / "checkpoint-4", [OLD_TRAIN])
    (tmp_path / "checkpoint-4" / "config.json").write_text("{}")
    (tmp_path / "checkpoint-4" / "model.safetensors").write_bytes(b"")  # discover wants weights in a checkpoint
    (tmp_path / "checkpoint-4" / "dpo_doctor_config.json").write_text('{"beta": 0.1}')
    assert detect_framework(read_train_log(tmp_path), tmp_path) == "dpo-doctor"
