"""The exit-code contract, end to end through the installed console script: 3 for an internal error (a bug), the
dashboard's crash included, with one line on stderr naming the saved traceback; 2 for a bad --out of `report`.

A real internal error is injected without any test hook in the package: a `sitecustomize.py` on PYTHONPATH (Python
imports it at start-up, before the console script runs) breaks one function of dpo-doctor, so the installed
`dpo-doctor` script really crashes inside a command.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.hostile.conftest import assert_user_error, run_cli

FIXTURE_REPORT = Path(__file__).resolve().parents[1] / "fixtures" / "tui_report"
HEADLESS = "textual.drivers.headless_driver:HeadlessDriver"  # the dashboard runs without a terminal


def _inject(tmp_path: Path, code: str) -> dict:
    """Env that makes Python run `code` at start-up (a sitecustomize module), with the cache under tmp_path."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": str(site), "DPO_DOCTOR_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}


def _assert_internal_error(proc, exception: str) -> Path:
    """Exit 3, one line on stderr (no traceback) saying it is a bug, naming the saved traceback; returns its path."""
    detail = f"\nrc={proc.returncode}\nstderr:\n{proc.stderr}\nstdout:\n{proc.stdout[-2000:]}"
    assert proc.returncode == 3, "expected exit code 3" + detail
    assert "Traceback" not in proc.stderr, detail
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, "expected one line on stderr" + detail
    line = lines[0]
    assert "internal error" in line and "bug in dpo-doctor" in line and "report it" in line, detail
    found = re.search(r"saved in (\S+\.txt)", line)
    assert found, "the line does not say where the traceback is" + detail
    saved = Path(found.group(1))
    text = saved.read_text()
    assert "Traceback (most recent call last)" in text and exception in text, text[-2000:]
    assert "command: " in text and "dpo-doctor" in text.splitlines()[0]
    return saved


def test_internal_error_exits_3_with_the_traceback_saved(tmp_path):
    env = _inject(tmp_path, "import dpo_doctor.rules as r\nr.RULES = None  # an injected bug\n")
    saved = _assert_internal_error(run_cli("rules", env=env), "AttributeError")
    assert saved.parent == tmp_path / "cache" / "crashes"
    assert "rules_command" in saved.read_text()  # the frame where it broke


def test_internal_error_falls_back_to_the_temp_dir(tmp_path):
    """The cache dir cannot hold the file (a file is in the way): the traceback goes to the temp dir instead."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    env = {**_inject(tmp_path, "import dpo_doctor.rules as r\nr.RULES = None\n"), "DPO_DOCTOR_CACHE": str(blocker)}
    (tmp_path / "tmp").mkdir()
    saved = _assert_internal_error(run_cli("rules", env=env), "AttributeError")
    assert saved.parent == tmp_path / "tmp"


def test_debug_env_keeps_the_traceback(tmp_path):
    env = {**_inject(tmp_path, "import dpo_doctor.rules as r\nr.RULES = None\n"), "DPO_DOCTOR_DEBUG": "1"}
    proc = run_cli("rules", env=env)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "AttributeError" in proc.stderr


def test_dashboard_crash_exits_3(tmp_path):
    """A bug inside the Textual app (here: on mount) ends `dpo-doctor tui` with 3 and one line, not Textual's
    full-screen traceback and exit 1."""
    rep = tmp_path / "rep"
    shutil.copytree(FIXTURE_REPORT, rep)
    code = ("import dpo_doctor.views.tui.app as a\n\n"
            "def boom(self):\n    raise RuntimeError('injected dashboard bug')\n\n"
            "a.DoctorApp.on_mount = boom\n")
    env = {**_inject(tmp_path, code), "TEXTUAL_DRIVER": HEADLESS}
    saved = _assert_internal_error(run_cli("tui", rep, env=env, timeout=60), "injected dashboard bug")
    assert "in boom" in saved.read_text()


def test_report_out_under_a_file(tmp_path):
    rep = tmp_path / "rep"
    shutil.copytree(FIXTURE_REPORT, rep)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    for out in (blocker / "report.md", blocker / "sub" / "report.md"):
        assert_user_error(run_cli("report", rep, "--format", "md", "--out", out), "--out", "blocker", "is a file")
    assert blocker.read_text() == "x"
    made = tmp_path / "new" / "folder" / "report.md"  # missing folders are created
    proc = run_cli("report", rep, "--format", "md", "--out", made)
    assert proc.returncode == 0 and made.read_text().startswith("#"), proc.stderr


def test_a_bad_suite_row_fails_before_any_model_loads(tmp_path, tiny_dir):
    """check_config only checks that the suite exists; the scan reads it once, before any model, naming the row."""
    import json

    from tests.conftest import make_pairs

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(4)))
    suite = tmp_path / "suite.jsonl"
    suite.write_text('{"prompt": "2+2?", "answer": "four", "check": "numeric"}\n')
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", data, "--probe-suite", suite,
                   "--cache-dir", tmp_path / "cache", "--out", tmp_path / "rep")
    assert_user_error(proc, "suite.jsonl", "four", "not a number")
    assert not (tmp_path / "cache").exists()
