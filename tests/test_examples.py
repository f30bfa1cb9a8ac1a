"""Every examples/*.py runs as a user runs it (`python examples/NAME.py OUT`, offline, CPU) and leaves what its
docstring promises. Files starting with "_" are the examples' shared helpers, not examples."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))

# example -> (report folder under OUT, other files it must write)
EXPECTED = {
    "scan_trl_run": ("report", ["report/report.html", "report/report.md", "run/checkpoint-6/model.safetensors"]),
    "callback_trl": ("run/dpo-doctor", ["run/dpo-doctor/report.html", "run/dpo-doctor/report.md"]),
    "notebook_api": ("report", ["margins.html"]),
}


def test_every_example_is_checked():
    assert sorted(p.stem for p in EXAMPLES) == sorted(EXPECTED)


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_offline(script, tmp_path):
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1", "DPO_DOCTOR_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    report_dir, files = EXPECTED[script.stem]
    report = json.loads((out / report_dir / "report.json").read_text())
    assert [c["name"] for c in report["checkpoints"]] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert f"verdict: {report['verdict']}" in done.stdout
    for name in files:
        assert (out / name).is_file(), name
