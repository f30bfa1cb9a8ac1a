"""What `dpo-doctor tui` and `dpo-doctor watch` call: resolve the report dir(s), build the app, run it."""

from __future__ import annotations

import sys
from pathlib import Path

from dpo_doctor.errors import UserError
from dpo_doctor.views.tui.data import find_reports, open_report
from dpo_doctor.views.tui.watch import ScanFn, Watcher


def build_tui_app(path: Path | None = None):
    """A report dir opens directly; a folder of report dirs (default reports/) opens the picker."""
    from dpo_doctor.views.tui.app import DoctorApp

    root = Path(path) if path is not None else Path("reports")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder: pass a report dir written by `dpo-doctor scan` (e.g. reports/exp1)")
    if (root / "report.json").is_file():
        from dpo_doctor.report import load_report

        bundle = load_report(root)
        if bundle.kind == "compare":  # a `dpo-doctor compare` folder: its own overview
            from dpo_doctor.views.tui.compare import CompareApp

            return CompareApp(bundle)
    found = find_reports(root)
    if not found:
        raise UserError(f"no scans under {root} (no report.json there or in its sub-folders): run "
                        "`dpo-doctor scan RUN_DIR --data PAIRS` first, or pass the report dir")
    if found == [root] or len(found) == 1:
        return DoctorApp(open_report(found[0]))
    return DoctorApp(choices=found)


def _ended(app) -> int:
    """The app's exit code; a crash (a bug) is raised again for the CLI, which saves its traceback and exits 3."""
    if app.crash is not None:
        raise app.crash
    return app.return_code or 0


def run_tui(path: Path | None = None) -> int:
    """Run the dashboard; returns its exit code, or raises the exception that crashed it."""
    app = build_tui_app(path)
    app.run()
    return _ended(app)


def build_watch_app(run_dir: Path, scan_fn: ScanFn, poll_s: float = 5.0, report_dir: Path | None = None):
    """The dashboard over a live run; shows the last report of `report_dir` (if any) until the first rescan lands."""
    from dpo_doctor.views.tui.app import DoctorApp

    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir} is not a folder: pass the training output dir that checkpoint-N/ folders land in")
    previous = open_report(report_dir) if report_dir is not None and (Path(report_dir) / "report.json").is_file() else None
    return DoctorApp(previous, watcher=Watcher(run_dir, scan_fn, poll_s=poll_s))


def run_watch(run_dir: Path, scan_fn: ScanFn, report_dir: Path, poll_s: float = 5.0) -> int:
    """Watch `run_dir` with the scan function the CLI hands in; after quitting, let a scan in flight stop between
    batches. Returns the app's exit code."""
    app = build_watch_app(run_dir, scan_fn, poll_s=poll_s, report_dir=report_dir)
    app.run()
    if not app.watcher.stop(timeout=0.1):
        print("dpo-doctor: stopping the scan in flight; every checkpoint scored so far is cached", file=sys.stderr)
        app.watcher.stop(timeout=120)
    return _ended(app)
