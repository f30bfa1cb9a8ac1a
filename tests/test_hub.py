"""Hugging Face Hub ids as inputs (`--ref org/tiny`, RUN_DIR `org/run`, `--data org/prefs`), resolved offline.

Every test builds a hub cache by hand in huggingface_hub's layout (`models--org--name/{refs/main,
snapshots/<commit>/...}` with files linked to `blobs/`, as `hf download` leaves it), points HF_HUB_CACHE and
HF_HOME at it and runs with HF_HUB_OFFLINE=1: nothing here reaches a hub.
"""

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from dpo_doctor.data.hub import read_dataset
from dpo_doctor.data.pairs import read_rows
from dpo_doctor.discover import discover
from dpo_doctor.weights import weight_files
from dpo_doctor.errors import UserError
from dpo_doctor.hub import parse_hub_id, resolve_model_path
from dpo_doctor.scan.config import ScanConfig, check_config
from tests.conftest import make_pairs
from tests.hostile.conftest import assert_user_error, run_cli

MAIN, DEV = "a" * 40, "b" * 40


def put_repo(cache: Path, repo: str, files: dict[str, bytes | Path], kind: str = "models", commit: str = MAIN,
             refs: tuple[str, ...] = ("main",)) -> Path:
    """One snapshot of `repo` in the cache: blobs named by content hash, snapshot files linked to them."""
    root = cache / f"{kind}--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    for rel, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


def folder_files(folder: Path, prefix: str = "") -> dict[str, Path]:
    return {f"{prefix}{p.relative_to(folder)}": p for p in sorted(folder.rglob("*")) if p.is_file()}


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture()
def hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache, offline; datasets' own cache moved into tmp too (nothing may land in ~/.cache)."""
    import datasets

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    return cache


@pytest.fixture(scope="module")
def second_model(tiny_dir, tmp_path_factory) -> Path:
    """The tiny model's architecture and tokenizer with other weights: a checkpoint that moved."""
    from transformers import AutoTokenizer

    from dpo_doctor.zoo import tiny

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    return tiny.save(tiny.build_model(tok, hidden=32, layers=2, heads=2, seed=1), tok,
                     tmp_path_factory.mktemp("second") / "model")


@pytest.fixture()
def cached(hub, tiny_dir, second_model) -> dict[str, Path]:
    """org/tiny (main and dev), org/run (checkpoint-1/, checkpoint-2/), org/prefs (jsonl train/test splits)."""
    run = {**folder_files(tiny_dir, "checkpoint-1/"), **folder_files(second_model, "checkpoint-2/"),
           "trainer_state.json": json.dumps({"global_step": 2, "log_history": []}).encode()}
    return {
        "tiny": put_repo(hub, "org/tiny", folder_files(tiny_dir)),
        "tiny@dev": put_repo(hub, "org/tiny", folder_files(second_model), commit=DEV, refs=("dev",)),
        "run": put_repo(hub, "org/run", run),
        "prefs": put_repo(hub, "org/prefs", {"data/train.jsonl": jsonl(make_pairs(8, seed=3)),
                                             "data/test.jsonl": jsonl(make_pairs(6)),
                                             "README.md": b"# prefs\n"}, kind="datasets"),
    }


# ---- ids -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("org/tiny", ("org/tiny", None)), ("org/tiny@dev", ("org/tiny", "dev")), (f"o-1/m.2_x@{MAIN}", ("o-1/m.2_x", MAIN)),
    ("org/tiny@refs/pr/1", ("org/tiny", "refs/pr/1")),
    ("/abs/path", None), ("./org/tiny", None), ("~/tiny", None), ("runs/exp/checkpoint-1", None), ("tiny", None),
    ("org--x/y", None), ("org/..", None), ("org/x-", None), ("org/ti ny", None),
])
def test_parse_hub_id(text, expected):
    assert parse_hub_id(text) == expected


def test_a_local_path_wins_over_a_hub_id(cached, tmp_path, monkeypatch, tiny_dir):
    shutil.copytree(tiny_dir, tmp_path / "org" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("org/tiny", "--ref") == Path("org/tiny")
    assert resolve_model_path(tmp_path / "nope", "--ref") == tmp_path / "nope"  # no id: the caller says "missing"


# ---- models and runs -------------------------------------------------------------------------------------------

def test_ref_hub_id_resolves_to_the_cached_snapshot(cached, tiny_dir):
    run = discover(tiny_dir, ref="org/tiny")
    assert run.reference.path == cached["tiny"].resolve() and run.reference_source == "--ref"
    assert run.reference.kind == "full"


def test_ref_at_revision_branch_or_commit(cached, tiny_dir):
    assert discover(tiny_dir, ref="org/tiny@dev").reference.path == cached["tiny@dev"].resolve()
    assert discover(tiny_dir, ref=f"org/tiny@{MAIN}").reference.path == cached["tiny"].resolve()
    with pytest.raises(UserError, match=r"--ref org/tiny@v9: .*revision v9.*hf download org/tiny --revision v9"):
        discover(tiny_dir, ref="org/tiny@v9")


def test_run_as_hub_id_with_checkpoint_folders(cached):
    run = discover("org/run", ref="org/tiny")
    assert [(c.name, c.step) for c in run.checkpoints] == [("checkpoint-1", 1), ("checkpoint-2", 2)]
    assert run.checkpoints[0].spec.path == (cached["run"] / "checkpoint-1").resolve()
    assert run.name == "org/run" and run.path == cached["run"].resolve()


def test_uncached_id_names_the_id_and_the_fetch_command(hub, tiny_dir):
    with pytest.raises(UserError, match=r"--ref org/gone: .*not in the Hugging Face cache .*HF_HUB_OFFLINE=1.*"
                                        r"`hf download org/gone`, or unset HF_HUB_OFFLINE"):
        discover(tiny_dir, ref="org/gone")
    with pytest.raises(UserError, match="RUN_DIR org/gone"):
        discover("org/gone")


def _fake_adapter(folder: Path, base: str) -> Path:
    """adapter_config.json + a valid (tiny) adapter_model.safetensors: discovery reads headers, never weights."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "base_model_name_or_path": base}))
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    return folder


def test_adapter_base_named_by_hub_id(cached, tmp_path):
    _fake_adapter(tmp_path / "lora" / "checkpoint-3", "org/tiny")
    run = discover(tmp_path / "lora")
    assert run.checkpoints[0].spec.base == cached["tiny"].resolve()
    assert run.reference_source == "adapter base" and run.reference.path == cached["tiny"].resolve()
    _fake_adapter(tmp_path / "lora2" / "checkpoint-3", "org/gone")
    with pytest.raises(UserError, match=r"names base org/gone which does not exist here; pass --base PATH, or "
                                        r"fetch it with `hf download org/gone`"):
        discover(tmp_path / "lora2")
    assert discover(tmp_path / "lora2", base="org/tiny").checkpoints[0].spec.base == cached["tiny"].resolve()


def test_sharded_snapshot_links_into_blobs(hub):
    """Shards in a snapshot are links into blobs/: inside the folder for discovery, wherever the bytes live."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    shard = struct.pack("<Q", len(header)) + header + bytes(4)
    index = {"weight_map": {"a.w": "model-00001-of-00002.safetensors", "b.w": "model-00002-of-00002.safetensors"}}
    files = {"config.json": b"{}", "model.safetensors.index.json": json.dumps(index).encode(),
             **{name: shard for name in index["weight_map"].values()}}
    snap = put_repo(hub, "org/sharded", files)
    assert (snap / "model-00001-of-00002.safetensors").is_symlink()
    found = weight_files(resolve_model_path("org/sharded", "--ref"), "full")
    assert [f.name for f in found] == sorted(index["weight_map"].values())


def test_check_config_accepts_cached_ids_and_refuses_uncached(cached, tmp_path):
    cfg = ScanConfig(run_dir=Path("org/run"), data=Path("org/prefs"), ref=Path("org/tiny@dev"), base=Path("org/tiny"),
                     out=tmp_path / "out")
    assert check_config(cfg) is cfg
    for flag, field in (("--ref", "ref"), ("--base", "base"), ("--data", "data")):
        with pytest.raises(UserError, match=f"{flag} org/gone: .*hf download org/gone"):
            check_config(ScanConfig(**{**cfg.__dict__, field: Path("org/gone")}))
    with pytest.raises(UserError, match="RUN_DIR org/gone"):
        check_config(ScanConfig(**{**cfg.__dict__, "run_dir": Path("org/gone")}))


# ---- data --------------------------------------------------------------------------------------------------------

def test_data_hub_id_reads_the_cached_dataset(cached):
    assert read_rows(Path("org/prefs")) == make_pairs(6)  # no split named: "test"
    assert read_rows(Path("org/prefs:train")) == make_pairs(8, seed=3)
    assert read_rows(Path("org/prefs:default:train")) == make_pairs(8, seed=3)
    assert read_rows(Path(f"org/prefs@{MAIN}:train")) == make_pairs(8, seed=3)
    with pytest.raises(UserError, match=r"--data org/prefs:dev: .*Bad split: dev"):
        read_rows(Path("org/prefs:dev"))
    with pytest.raises(UserError, match=r"--data org/gone: .*`hf download org/gone --repo-type dataset`"):
        read_rows(Path("org/gone"))


def test_data_parquet_conversational_repo(hub, tmp_path):
    import polars as pl

    def turn(role, text):
        return [{"role": role, "content": text}]

    rows = [{"prompt": turn("user", p["prompt"]), "chosen": turn("assistant", p["chosen"]),
             "rejected": turn("assistant", p["rejected"])} for p in make_pairs(5)]
    pl.DataFrame(rows).write_parquet(tmp_path / "x.parquet")
    put_repo(hub, "org/chat", {"data/test-00000-of-00001.parquet": tmp_path / "x.parquet"}, kind="datasets")
    assert read_rows(Path("org/chat")) == rows


def test_data_local_folder_of_files_and_configs(tmp_path, hub):
    """A plain folder that load_dataset reads (no save_to_disk markers), README `configs:` included."""
    folder = tmp_path / "prefs"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(jsonl(make_pairs(3)))
    (folder / "b.jsonl").write_bytes(jsonl(make_pairs(4, seed=9)))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: a\n  data_files: a.jsonl\n"
                                      "- config_name: b\n  data_files: b.jsonl\n---\n")
    with pytest.raises(UserError, match=r"has 2 configs \(a, b\) and no default; name one, e.g. --data .*prefs:a"):
        read_rows(folder)
    assert read_rows(Path(f"{folder}:a")) == make_pairs(3)
    assert read_rows(Path(f"{folder}:b")) == make_pairs(4, seed=9)
    assert read_rows(Path(f"{folder}:b:train")) == make_pairs(4, seed=9)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a datasets.save_to_disk folder"):
        read_dataset(tmp_path / "empty")
    assert not (tmp_path / "hf" / "datasets").exists() or not any((tmp_path / "hf" / "datasets").rglob("*.arrow"))


# ---- through the console script ---------------------------------------------------------------------------------

def _env(hub: Path) -> dict:
    return {"HF_HOME": str(hub.parent), "HF_HUB_CACHE": str(hub), "HF_DATASETS_CACHE": str(hub.parent / "datasets")}


def test_cli_uncached_id_is_one_line_exit_2(hub, tiny_dir, pairs_jsonl, tmp_path):
    proc = run_cli("scan", tiny_dir, "--ref", "org/nope@v2", "--data", pairs_jsonl, "--out", tmp_path / "o",
                   env=_env(hub))
    assert_user_error(proc, "org/nope", "hf download org/nope --revision v2", "HF_HUB_OFFLINE")
    proc = run_cli("scan", "org/nope", "--data", pairs_jsonl, "--out", tmp_path / "o", env=_env(hub))
    assert_user_error(proc, "org/nope", "hf download org/nope")


def test_cli_scan_everything_from_the_hub_cache(cached, hub, tmp_path):
    out = tmp_path / "report"
    proc = run_cli("scan", "org/run", "--ref", "org/tiny", "--data", "org/prefs", "--no-generate", "--no-render",
                   "--out", out, "--cache-dir", tmp_path / "scores", env=_env(hub), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["name"] == "org/run"
    assert [c["name"] for c in report["checkpoints"]] == ["checkpoint-1", "checkpoint-2"]
    assert report["reference"]["path"] == str(cached["tiny"].resolve())
    assert report["data"]["path"] == "org/prefs" and report["data"]["n_pairs"] == 6


def test_run_pushed_as_one_revision_per_checkpoint(hub, tiny_dir, second_model):
    """Branches `checkpoint-10` and `step20` of org/rev-run are its checkpoints (main holds the last model)."""
    from dpo_doctor.discover import discover

    put_repo(hub, "org/rev-run", folder_files(second_model), commit=DEV, refs=("main", "step20"))
    put_repo(hub, "org/rev-run", folder_files(tiny_dir), commit=MAIN, refs=("checkpoint-10",))
    put_repo(hub, "org/ref", folder_files(tiny_dir))
    run = discover(Path("org/rev-run"), ref=Path("org/ref"))
    assert [(c.name, c.step) for c in run.checkpoints] == [("checkpoint-10", 10), ("checkpoint-20", 20)]
    assert run.checkpoints[0].spec.path.name == MAIN and run.checkpoints[1].spec.path.name == DEV
    pinned = discover(Path("org/rev-run@checkpoint-10"), ref=Path("org/ref"))  # a pinned revision is one model
    assert len(pinned.checkpoints) == 1
