"""Textual dashboard: navigation on every screen, sorting, search, opening a pair, markup safety, the browser key,
torch-free fast start, and watch mode (a checkpoint copied into the run dir appears in the dashboard).

All on the fixed report in tests/fixtures/tui_report (rebuilt by `python tests/fixtures/report_fixture.py`, the one
report fixture builder). Expected values are recomputed here straight from the Parquet files, independently of the
TUI's own code paths.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from dpo_doctor.errors import UserError
from dpo_doctor.views.tui.app import DoctorApp
from dpo_doctor.views.tui.data import find_reports, open_report
from dpo_doctor.views.tui.launch import build_tui_app, build_watch_app
from dpo_doctor.views.tui.watch import Watcher, WatchStopped, run_snapshot
from textual.widgets import DataTable, Static

from tests.fixtures.report_fixture import write_fixture_report

FIXTURE = Path(__file__).parent / "fixtures" / "tui_report"
HOSTILE = "[bold]Why[/bold] is the sky blue? [/]"
SIZE = (100, 30)


def run(coro):
    return asyncio.run(coro)


def app_for(path: Path = FIXTURE) -> DoctorApp:
    return DoctorApp(open_report(path))


def rendered(widget) -> list[list]:
    """The segments a widget actually draws, line by line (text after markup handling, with styles)."""
    return [list(strip) for strip in widget.render_lines(widget.region.reset_offset)]


def rendered_text(widget) -> str:
    return "\n".join("".join(seg.text for seg in line) for line in rendered(widget))


def column(table: DataTable, key: str) -> list[str]:
    return [table.get_cell(row, key).plain.strip() for row in table.rows]


# ---- data ------------------------------------------------------------------------------------------------------


def test_open_report_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        open_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        open_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 2}))
    with pytest.raises(UserError, match="schema_version 2"):
        open_report(tmp_path)


def test_find_reports_lists_report_dirs_one_or_two_levels_down(tmp_path):
    for name in ("a", "b"):
        shutil.copytree(FIXTURE, tmp_path / "reports" / name)
    (tmp_path / "reports" / "empty").mkdir()
    assert find_reports(tmp_path / "reports") == [tmp_path / "reports" / "a", tmp_path / "reports" / "b"]
    assert find_reports(tmp_path) == [tmp_path / "reports" / "a", tmp_path / "reports" / "b"]
    assert find_reports(FIXTURE) == [FIXTURE]
    with pytest.raises(UserError, match="no scans under"):
        build_tui_app(tmp_path / "reports" / "empty")


def test_cli_tui_bad_dir_exits_2(tmp_path, capsys):
    from dpo_doctor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["tui", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "is not a folder" in capsys.readouterr().err


# ---- screens ---------------------------------------------------------------------------------------------------


def test_overview_shows_verdict_facts_and_diagnoses_then_opens_one():
    async def go():
        app = app_for()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert "ERROR" in rendered_text(app.screen.query_one("#verdict"))
            facts = rendered_text(app.screen.query_one("#facts"))
            assert "exp-length" in facts and "checkpoint-50" in facts and "40 pairs" in facts
            table = app.screen.query_one("#diagnoses", DataTable)
            assert column(table, "code") == ["DPO106", "DPO101", "DPO202"]  # worst first
            assert column(table, "severity") == ["ERROR", "WARNING", "INFO"]
            await pilot.press("enter")
            await pilot.pause()
            assert type(app.screen).__name__ == "DiagnosisScreen" and app.screen.diagnosis.code == "DPO106"
            evidence = app.screen.query_one("#evidence", DataTable)
            assert column(evidence, "metric") == ["drift_per_token/chosen", "drift/chosen_fell_frac"]
            assert column(evidence, "threshold") == ["-0.050", "0.600"] and column(evidence, "vs") == ["<", ">"]
            assert "DPOP" in rendered_text(app.screen.query_one("#diag-fix"))
            assert "[bold]displacement[/bold]" in rendered_text(app.screen.query_one("#diag-message"))
            await pilot.press("escape")
            await pilot.pause()
            assert type(app.screen).__name__ == "OverviewScreen"
            await pilot.press("down", "enter")
            await pilot.pause()
            assert app.screen.diagnosis.code == "DPO101"
            assert column(app.screen.query_one("#evidence", DataTable), "threshold") == ["1.300", "0.500", "0.750"]
            assert "R-DPO" in rendered_text(app.screen.query_one("#diag-fix"))
            assert "pays for tokens [/]." in rendered_text(app.screen.query_one("#diag-explanation"))
            await pilot.press("escape")
            await pilot.pause()
            assert type(app.screen).__name__ == "OverviewScreen"
    run(go())


def test_checkpoints_table_detail_and_cited_diagnosis():
    doc = json.loads((FIXTURE / "report.json").read_text())

    async def go():
        app = app_for()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("c")
            await pilot.pause()
            table = app.screen.query_one("#checkpoints", DataTable)
            assert column(table, "checkpoint") == [c["name"] for c in doc["checkpoints"]] + ["trend"]
            assert app.checkpoint == "checkpoint-50"  # the report's best checkpoint is selected first
            margin = doc["checkpoints"][1]["metrics"]["rewards/margins"]
            assert table.get_cell("checkpoint-50", "rewards/margins").plain == f"{margin:.3f} ▲"
            assert column(table, "gen/length_ratio")[-1] == "▁▃▆█"  # the trend row's sparkline
            await pilot.press("down")
            await pilot.pause()
            assert app.checkpoint == "checkpoint-75"
            assert "drift/chosen" in rendered_text(app.screen.query_one("#ckpt-metrics-table"))
            cited = app.screen.query_one("#cited", DataTable)
            assert cited.row_count == 1 and "DPO106" in cited.get_cell_at((0, 1)).plain
            cited.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert type(app.screen).__name__ == "DiagnosisScreen" and app.screen.diagnosis.code == "DPO106"
            await pilot.press("escape")
            await pilot.pause()
            app.screen.query_one("#checkpoints", DataTable).focus()
            await pilot.press("enter")  # Enter on a checkpoint row opens its pairs
            await pilot.pause()
            assert type(app.screen).__name__ == "PairsScreen" and app.checkpoint == "checkpoint-75"
    run(go())


def _expected_pairs(checkpoint: str) -> pl.DataFrame:
    pairs = pl.read_parquet(FIXTURE / "pairs.parquet").filter(pl.col("checkpoint") == checkpoint)
    return pairs.join(pl.read_parquet(FIXTURE / "pair_texts.parquet"), on="pair_id")


def _ids_sorted(df: pl.DataFrame, key, reverse=False) -> list[str]:
    rows = sorted(df.iter_rows(named=True), key=key, reverse=reverse)
    return [str(r["pair_id"]) for r in rows]


def test_pairs_sorting_by_margin_drift_and_length():
    exp = _expected_pairs("checkpoint-50")

    async def go():
        app = app_for()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("p")
            await pilot.pause()
            table = app.screen.query_one("#pairs", DataTable)
            assert table.row_count == 40
            assert column(table, "pair_id") == _ids_sorted(exp, lambda r: r["margin"])
            await pilot.press("m")  # same key again: descending
            assert column(table, "pair_id") == _ids_sorted(exp, lambda r: r["margin"], reverse=True)
            await pilot.press("d")
            assert column(table, "pair_id") == _ids_sorted(exp, lambda r: r["logp_chosen"] - r["ref_logp_chosen"])
            await pilot.press("l")
            got = [int(v) for v in column(table, "len_diff")]
            assert got == sorted(r["len_chosen"] - r["len_rejected"] for r in exp.iter_rows(named=True))
            await pilot.press("right_square_bracket")
            await pilot.pause()
            assert app.checkpoint == "checkpoint-75"
            assert "checkpoint-75 (3/4)" in rendered_text(app.screen.query_one("#pairs-info"))
            await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket")
            assert app.checkpoint == "checkpoint-25"  # clamps at the first
    run(go())


def test_pairs_search_filters_and_enter_opens_the_pair():
    exp = _expected_pairs("checkpoint-50")
    want = {str(r["pair_id"]) for r in exp.iter_rows(named=True)
            if any("bold" in r[c].lower() for c in ("prompt", "chosen", "rejected"))}
    assert want  # the fixture has hostile prompts containing [bold]

    async def go():
        app = app_for()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("p", "slash", *"BOLD")  # case-insensitive
            await pilot.pause()
            table = app.screen.query_one("#pairs", DataTable)
            assert set(column(table, "pair_id")) == want
            await pilot.press("enter")  # leaves the search box for the table
            await pilot.press("escape")  # clears the filter
            await pilot.pause()
            assert table.row_count == 40 and app.pairs_query == ""
            await pilot.press("slash", *"sky blue", "enter")
            await pilot.pause()
            assert column(table, "pair_id") == ["0"]
            await pilot.press("enter")
            await pilot.pause()
            assert type(app.screen).__name__ == "PairScreen"
            row = exp.filter(pl.col("pair_id") == 0).row(0, named=True)
            nums = rendered_text(app.screen.query_one("#pair-numbers"))
            for v in (row["logp_chosen"], row["ref_logp_chosen"], row["logp_rejected"], row["ref_logp_rejected"]):
                assert f"{v:.3f}" in nums
            assert rendered_text(app.screen.query_one("#pair-chosen")).count("[/]") == 1
            await pilot.press("escape")
            await pilot.pause()
            assert type(app.screen).__name__ == "PairsScreen"
    run(go())


def test_untrusted_text_is_shown_literally_and_unstyled():
    async def go():
        app = app_for()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("p", "slash", *"sky blue", "enter", "enter")
            await pilot.pause()
            prompt = app.screen.query_one("#pair-prompt", Static)
            assert HOSTILE in rendered_text(prompt)
            for line in rendered(prompt):
                for seg in line:
                    if "Why" in seg.text:
                        assert not (seg.style and seg.style.bold), "markup in the data styled the text"
            await pilot.press("escape", "s")
            await pilot.pause()
            assert HOSTILE in rendered_text(app.screen.query_one("#prompts"))
            assert "[b]not bold[/b]" in rendered_text(app.screen.query_one("#ref-samples"))
    run(go())


def test_samples_reference_vs_policy_and_checkpoint_keys():
    samples = pl.read_parquet(FIXTURE / "samples.parquet")

    async def go():
        app = app_for()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("s")
            await pilot.pause()
            ref = rendered_text(app.screen.query_one("#ref-samples"))
            pol = rendered_text(app.screen.query_one("#policy-samples"))
            first = lambda ck, pid: samples.filter((pl.col("checkpoint") == ck) & (pl.col("prompt_id") == pid)  # noqa: E731
                                                   ).sort("sample_idx")["text"][1]
            assert first("reference", 0).split()[0] in ref and "reference" in ref
            assert first("checkpoint-50", 0).split()[0] in pol and "checkpoint-50" in pol
            await pilot.press("down", "right_square_bracket")
            await pilot.pause()
            pol = rendered_text(app.screen.query_one("#policy-samples"))
            assert app.checkpoint == "checkpoint-75" and "checkpoint-75" in pol
            assert " ".join(first("checkpoint-75", 1).split()[:3]) in " ".join(pol.split())
            assert "prompt 2/6" in rendered_text(app.screen.query_one("#samples-info"))
    run(go())


def test_browser_key_opens_report_html_when_present(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url))
    shutil.copytree(FIXTURE, tmp_path / "r")

    async def press_b(path):
        app = app_for(path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("b")
            await pilot.pause()

    run(press_b(tmp_path / "r"))
    assert opened == []  # no report.html: the key is hidden and does nothing
    (tmp_path / "r" / "report.html").write_text("<html></html>")
    run(press_b(tmp_path / "r"))
    assert opened == [(tmp_path / "r" / "report.html").resolve().as_uri()]


def test_picker_lists_scans_and_opens_one(tmp_path):
    write_fixture_report(tmp_path / "reports" / "alpha", n_checkpoints=2, run_name="alpha")
    write_fixture_report(tmp_path / "reports" / "beta", n_checkpoints=3, run_name="beta")

    async def go():
        app = build_tui_app(tmp_path / "reports")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert type(app.screen).__name__ == "PickerScreen"
            assert column(app.screen.query_one("#picker", DataTable), "run") == ["alpha", "beta"]
            await pilot.press("down", "enter")
            await pilot.pause()
            assert type(app.screen).__name__ == "OverviewScreen"
            assert app.report.doc.run.name == "beta" and len(app.report.checkpoints) == 3
    run(go())


def test_starts_without_importing_torch():
    """The dashboard never loads torch, transformers or peft (its start-up time is a benchmark matter, not a test's)."""
    code = (
        "import asyncio, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from pathlib import Path\n"
        "from dpo_doctor.views.tui.launch import build_tui_app\n"
        "async def main():\n"
        f"    app = build_tui_app(Path({str(FIXTURE)!r}))\n"
        "    async with app.run_test(size=(100, 30)) as pilot:\n"
        "        await pilot.pause()\n"
        "        print(time.perf_counter() - t0, 'torch' in sys.modules, 'transformers' in sys.modules, 'peft' in sys.modules)\n"
        "asyncio.run(main())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    torch, transformers, peft = out[1:]
    assert (torch, transformers, peft) == ("False", "False", "False")


# ---- watch mode ------------------------------------------------------------------------------------------------


def _fake_checkpoint(path: Path, size: int = 8) -> None:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"0" * size)


def fake_scanner(report_dir: Path, calls: list):
    """A stand-in for dpo_doctor.scan.pipeline: writes the fixture report with one checkpoint per checkpoint-N dir."""
    def scan_fn(run_dir: Path, progress) -> Path:
        n = len([d for d in run_dir.iterdir() if d.name.startswith("checkpoint-")])
        for i in range(n + 1):
            progress("scoring", i, n)
        calls.append(n)
        return write_fixture_report(report_dir, n_checkpoints=n)
    return scan_fn


def test_watch_picks_up_a_new_checkpoint_and_shows_it(tmp_path):
    run_dir = tmp_path / "run"
    for step in (25, 50, 75, 100):
        _fake_checkpoint(run_dir / f"checkpoint-{step}")
    calls: list[int] = []
    app = build_watch_app(run_dir, fake_scanner(tmp_path / "report", calls), poll_s=0.05)

    async def wait_for(pilot, cond, timeout=10.0):
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, "timed out waiting for the dashboard"
            await pilot.pause(0.05)

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.report is not None)
            await pilot.press("c")
            table = app.screen.query_one("#checkpoints", DataTable)
            await wait_for(pilot, lambda: "checkpoint-100" in column(table, "checkpoint"))
            assert "checkpoint-125" not in column(table, "checkpoint")
            shutil.copytree(run_dir / "checkpoint-100", run_dir / "checkpoint-125")
            await wait_for(pilot, lambda: "checkpoint-125" in column(table, "checkpoint"))
            assert "5 checkpoints scanned" in app.sub_title
            await pilot.press("q")
        assert calls == [4, 5]  # one scan at start, one rescan for the new checkpoint
    run(go())
    assert app.watcher.stop(timeout=2)


def test_watcher_waits_for_a_checkpoint_to_finish_writing(tmp_path):
    run_dir = tmp_path / "run"
    _fake_checkpoint(run_dir / "checkpoint-1")
    seen = []
    watcher = Watcher(run_dir, lambda d, progress: seen.append(run_snapshot(d)) or d, poll_s=0.3)
    reports = []
    watcher.start(on_report=reports.append, on_progress=lambda *a: None, on_error=pytest.fail)
    deadline = time.monotonic() + 20  # generous: the machine is shared, and polls are slow on purpose
    while len(seen) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    _fake_checkpoint(run_dir / "checkpoint-2", size=1)
    for size in range(2, 12):  # still growing: no rescan while the snapshot changes every poll
        (run_dir / "checkpoint-2" / "model.safetensors").write_bytes(b"0" * size)
        time.sleep(0.002)  # far shorter than a poll: a stable snapshot can only be the finished one
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watcher.stop(timeout=2)
    assert len(seen) == 2 and reports == [run_dir, run_dir]
    assert dict(seen[1])["checkpoint-2"] == (("config.json", 2), ("model.safetensors", 11))  # scanned once, complete


def test_quitting_stops_a_scan_in_flight(tmp_path):
    run_dir = tmp_path / "run"
    _fake_checkpoint(run_dir / "checkpoint-1")
    started, stopped = threading.Event(), threading.Event()

    def endless_scan(run_dir, progress):
        started.set()
        try:
            while True:
                progress("scoring checkpoint-1", 1, 10)
                time.sleep(0.01)
        except WatchStopped:
            stopped.set()
            raise

    app = build_watch_app(run_dir, endless_scan, poll_s=0.05)

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            while not started.is_set():
                await pilot.pause(0.02)
            await pilot.pause(0.1)
            assert "scoring checkpoint-1 1/10" in app.sub_title
            await pilot.press("ctrl+c")
    run(go())
    assert app.watcher.stop(timeout=2) and stopped.is_set()
