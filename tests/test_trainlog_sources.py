"""Each training-log source, written by its own library where it installs (tensorboardX's SummaryWriter, wandb in
offline mode, trackio) or in its documented layout (W&B CSV export, Trackio's SQLite schema), read back into the
TRL-named table; every check compares the values read to the values written."""

import json
import sqlite3

import pytest

from dpo_doctor.errors import UserError
from dpo_doctor.trainlog import detect_framework, kind_of, load_train_log, read_train_log

# HF Trainer's callbacks log these dicts through rewrite_logs: `train/<key>`, `eval/<key>`, plus train/global_step.
HF_TRAIN = [{"train/loss": 0.69 - 0.1 * i, "train/rewards/chosen": 0.1 * i, "train/rewards/rejected": -0.1 * i,
             "train/rewards/margins": 0.2 * i, "train/rewards/accuracies": 0.5 + 0.1 * i,
             "train/learning_rate": 1e-6, "train/epoch": 0.25 * i, "train/global_step": 10 * i} for i in (1, 2, 3)]
HF_EVAL = {"eval/loss": 0.55, "eval/rewards/margins": 0.41, "eval/runtime": 12.0, "train/epoch": 0.5,
           "train/global_step": 20}
# OpenRLHF's DPOTrainer: train/<key> with its names, eval/eval_loss and eval/acc_mean, global_step per prefix.
OPENRLHF_TRAIN = [{"train/loss": 0.6, "train/acc": 0.75, "train/chosen_reward": 0.5, "train/reject_reward": -0.25,
                   "train/lr": 5e-7, "train/loss_mean": 0.61, "train/acc_mean": 0.7, "train/global_step": s}
                  for s in (1, 2)]
OPENRLHF_EVAL = {"eval/eval_loss": 0.65, "eval/acc_mean": 0.625, "eval/global_step": 2}


def check_hf(df, *, eval_row=True):
    train = df.filter(df["split"] == "train")
    assert train["step"].to_list() == [10, 20, 30]
    assert train["loss"].to_list() == pytest.approx([0.59, 0.49, 0.39])
    assert train["rewards/margins"].to_list() == pytest.approx([0.2, 0.4, 0.6])
    assert train["rewards/accuracies"].to_list() == pytest.approx([0.6, 0.7, 0.8])
    assert train["epoch"].to_list() == pytest.approx([0.25, 0.5, 0.75])
    assert train["learning_rate"].to_list() == pytest.approx([1e-6] * 3)
    if eval_row:
        ev = df.filter(df["split"] == "eval")
        assert ev["step"].to_list() == [20] and ev["epoch"].to_list() == [0.5]
        assert ev["loss"].to_list() == pytest.approx([0.55])
        assert ev["rewards/margins"].to_list() == pytest.approx([0.41])
    assert "runtime" not in df.columns and not any("/global_step" in c or c.startswith("eval/") for c in df.columns)


def check_openrlhf(df):
    """TensorBoard stores float32: compare with approx."""
    train = df.filter(df["split"] == "train")
    assert train["step"].to_list() == [1, 2]
    assert train["rewards/accuracies"].to_list() == pytest.approx([0.75, 0.75])
    assert train["rewards/chosen"].to_list() == pytest.approx([0.5, 0.5])
    assert train["rewards/rejected"].to_list() == pytest.approx([-0.25, -0.25])
    assert train["rewards/margins"].to_list() == pytest.approx([0.75, 0.75])  # derived: mean(c) - mean(r)
    assert train["learning_rate"].to_list() == pytest.approx([5e-7, 5e-7])
    assert train["loss_mean"].to_list() == pytest.approx([0.61, 0.61])
    ev = df.filter(df["split"] == "eval")
    assert ev["step"].to_list() == [2]
    assert ev["loss"].to_list() == pytest.approx([0.65])
    assert ev["rewards/accuracies"].to_list() == pytest.approx([0.625])
    assert detect_framework(df) == "openrlhf"


# --- TensorBoard -------------------------------------------------------------------------------------------------

def tb_write(folder, dicts):
    tbx = pytest.importorskip("tensorboardX", reason="tensorboardX not installed (pip install 'dpo-doctor[dev]')")
    writer = tbx.SummaryWriter(logdir=str(folder))
    for d in dicts:
        step = d.get("train/global_step", d.get("eval/global_step"))
        for tag, value in d.items():
            if not tag.endswith("global_step"):
                writer.add_scalar(tag, value, step)
    writer.add_text("args/text_summary", "not a curve", 0)
    writer.close()


def test_tensorboard_hf_run_found_under_runs(tmp_path):
    tb_write(tmp_path / "runs" / "Jan01_12-00-00_host", HF_TRAIN + [HF_EVAL])
    log = load_train_log(tmp_path)
    assert log.source == "tensorboard" and log.path == tmp_path / "runs" / "Jan01_12-00-00_host"
    check_hf(log.frame)
    assert log.warnings == ()


def test_tensorboard_openrlhf_names(tmp_path):
    tb_write(tmp_path / "tb" / "run1", OPENRLHF_TRAIN + [OPENRLHF_EVAL])
    check_openrlhf(read_train_log(tmp_path))


def test_tensorboard_tensor_scalars_and_cut_off_tail(tmp_path):
    """TF2-style scalars (a one-element float tensor) are read; a record cut off mid-write ends the read with a
    warning and keeps what came before."""
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed")
    from tensorboardX import SummaryWriter
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.proto.tensor_pb2 import TensorProto

    writer = SummaryWriter(logdir=str(tmp_path))
    for step, value in ((1, 0.5), (2, 0.25)):
        tensor = TensorProto(dtype=2, double_val=[value])  # DT_DOUBLE
        writer._get_file_writer().add_event(Event(step=step, summary=Summary(value=[
            Summary.Value(tag="train/rewards/margins", tensor=tensor)])))
    writer.close()
    (event_file,) = tmp_path.glob("events.out.tfevents.*")
    event_file.write_bytes(event_file.read_bytes()[:-5])
    log = load_train_log(tmp_path, log=event_file)
    assert log.frame["step"].to_list() == [1] and log.frame["rewards/margins"].to_list() == [0.5]
    assert "cut-off records" in log.warnings[0]


def test_missing_tensorboard_reader_is_a_user_error_naming_pip(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tb(name, *args, **kwargs):
        if name.startswith(("tensorboardX", "tensorboard")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    event_file = tmp_path / "events.out.tfevents.1.host"
    event_file.write_bytes(b"")
    monkeypatch.setattr(builtins, "__import__", no_tb)
    with pytest.raises(UserError, match=r"needs tensorboardX: pip install 'dpo-doctor\[tensorboard\]'"):
        load_train_log(tmp_path, log=event_file)
    log = load_train_log(tmp_path)  # found on its own: a warning, not a crash
    assert log.frame is None and "pip install 'dpo-doctor[tensorboard]'" in log.warnings[0]


# --- W&B ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb not installed (pip install 'dpo-doctor[wandb]')")
    for var, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path),
                       "WANDB_CONFIG_DIR": str(tmp_path / ".config"), "WANDB_CACHE_DIR": str(tmp_path / ".cache"),
                       "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true"}.items():
        monkeypatch.setenv(var, value)

    def log(dicts):
        run = wandb.init(mode="offline", dir=str(tmp_path), project="dpo", settings=wandb.Settings(
            x_disable_stats=True, x_disable_meta=True))
        for d in dicts:
            run.log(d)
        run.finish()
        wandb.teardown()  # stops wandb-core, which flushes the run file (finish alone may return before that)
    return log


def test_wandb_offline_run_hf_keys(tmp_path, wandb_offline):
    wandb_offline(HF_TRAIN[:2] + [HF_EVAL] + HF_TRAIN[2:] + [{"train/loss": float("nan"), "train/global_step": 40}])
    log = load_train_log(tmp_path)
    assert log.source == "wandb" and log.path.name.startswith("offline-run-")
    check_hf(log.frame.filter(log.frame["step"] < 40))
    nan_row = log.frame.filter(log.frame["step"] == 40)
    assert nan_row["loss"].is_nan().to_list() == [True]  # W&B keeps NaN; so do we
    assert load_train_log(tmp_path, log=log.path).frame.equals(log.frame)
    (wandb_file,) = log.path.glob("run-*.wandb")
    assert load_train_log(tmp_path, log=wandb_file).frame.equals(log.frame)


def test_wandb_offline_run_openrlhf_keys(tmp_path, wandb_offline):
    wandb_offline(OPENRLHF_TRAIN + [OPENRLHF_EVAL])
    check_openrlhf(read_train_log(tmp_path))


def test_wandb_file_that_is_not_one_is_a_user_error(tmp_path):
    pytest.importorskip("wandb", reason="wandb not installed")
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"hello")
    with pytest.raises(UserError, match="does not start with the W&B header"):
        load_train_log(tmp_path, log=bad)


def test_wandb_csv_export(tmp_path):
    columns = ["_step", "train/global_step", "train/loss", "train/rewards/chosen", "train/rewards/rejected",
               "train/rewards/margins", "train/rewards/accuracies", "train/learning_rate", "train/epoch",
               "eval/loss", "eval/rewards/margins", "_runtime"]
    lines = [",".join(columns)]
    for i, d in enumerate(HF_TRAIN[:2] + [HF_EVAL] + HF_TRAIN[2:]):
        lines.append(",".join(str(d.get(c, "")) if c != "_step" else str(i) for c in columns))
    path = tmp_path / "wandb_export_2026-01-01.csv"
    path.write_text("\n".join(lines) + "\n")
    log = load_train_log(tmp_path)
    assert log.source == "wandb_export" and log.warnings == ()
    check_hf(log.frame)


def test_wandb_chart_csv_with_run_prefix_and_bands(tmp_path):
    path = tmp_path / "chart.csv"
    path.write_text("Step,my-run - train/loss,my-run - train/loss__MIN,my-run - train/loss__MAX\n"
                    "10,0.7,0.6,0.8\n20,NaN,,\n30,oops,,\n")
    log = load_train_log(tmp_path, log=path)
    assert log.frame["step"].to_list() == [10, 20]
    assert log.frame["loss"][0] == 0.7 and log.frame["loss"].is_nan()[1]
    assert "loss at step 30: 'oops'" in log.warnings[0]


def test_wandb_json_history_export(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps([{"_step": i, **d} for i, d in enumerate(HF_TRAIN + [HF_EVAL])]))
    assert kind_of(path) == "wandb_export"
    check_hf(load_train_log(tmp_path, log=path).frame)


# --- Trackio -----------------------------------------------------------------------------------------------------

TRACKIO_SCHEMA = """CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    timestamp TEXT NOT NULL, run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL)"""


def trackio_db(path, runs):
    """A project database in trackio 0.43's layout (sqlite_storage.py), its NaN spelled "NaN" as trackio does."""
    conn = sqlite3.connect(path)
    conn.execute(TRACKIO_SCHEMA)
    for run, dicts in runs.items():
        for i, d in enumerate(dicts):
            text = json.dumps({k: ("NaN" if v != v else v) for k, v in d.items()})
            conn.execute("INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES (?, ?, ?, ?, ?)",
                         (run, "2026-01-01T00:00:00", run, i, text))
    conn.commit()
    conn.close()


def test_trackio_store_layout(tmp_path):
    db = tmp_path / "dpo-project.db"
    trackio_db(db, {"other-run": HF_TRAIN[:1], "dpo-out": HF_TRAIN + [HF_EVAL, {"train/loss": float("nan"),
                                                                             "train/global_step": 40}]})
    run_dir = tmp_path / "dpo-out"
    run_dir.mkdir()
    log = load_train_log(run_dir, log=db)
    assert log.source == "trackio"
    check_hf(log.frame.filter(log.frame["step"] < 40))
    assert log.frame.filter(log.frame["step"] == 40)["loss"].is_nan().to_list() == [True]
    assert log.warnings == ("dpo-project.db: skipped 1 other runs in the same Trackio project (other-run)",)


def test_trackio_logged_by_trackio(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "store"))
    trackio = pytest.importorskip("trackio", reason="trackio not installed (not in the dev extra: it pulls a web "
                                                    "server stack; the layout test above covers its store)")
    trackio.init(project="dpo", name="run-a")
    for d in HF_TRAIN + [HF_EVAL]:
        trackio.log(d)
    trackio.finish()
    (db,) = (tmp_path / "store").glob("*.db")
    check_hf(load_train_log(tmp_path, log=db).frame)


# --- explicit --log and detection -----------------------------------------------------------------------------------

def test_unknown_or_missing_log_is_a_user_error_listing_kinds(tmp_path):
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    with pytest.raises(UserError, match=r"notes.txt: not a training log kind.*Supported: trainer_state.json"):
        load_train_log(tmp_path, log=odd)
    with pytest.raises(UserError, match="no such file or folder"):
        load_train_log(tmp_path, log=tmp_path / "nope.json")
    with pytest.raises(UserError, match="found no training log in this folder"):
        load_train_log(tmp_path, log=tmp_path)
    garbage = tmp_path / "x.db"
    garbage.write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(UserError, match="x.db: cannot read .* as a Trackio store"):
        load_train_log(tmp_path, log=garbage)


def test_state_file_wins_over_trackers(tmp_path):
    tb_write(tmp_path / "runs" / "x", HF_TRAIN)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 7, "loss": 0.1}]}))
    log = load_train_log(tmp_path)
    assert log.source == "trainer_state" and log.frame["step"].to_list() == [7]
    assert load_train_log(tmp_path, log=tmp_path / "runs" / "x").source == "tensorboard"


def test_llama_factory_jsonl_named_with_log(tmp_path):
    path = tmp_path / "elsewhere.jsonl"
    path.write_text('{"current_steps": 3, "loss": 0.6, "lr": 1e-6}\n')
    log = load_train_log(tmp_path, log=path)
    assert log.source == "llama_factory" and log.frame.row(0, named=True)["learning_rate"] == 1e-6
