"""Watch mode's background loop: rescan a training run each time a new, fully written `checkpoint-N/` appears.

The loop knows nothing about models: it calls an injected `scan_fn(run_dir, progress) -> report_dir` (the real
one wraps `dpo_doctor.scan.scan`, whose cache makes each rescan score only the new checkpoint), and reports back
through three callbacks. Stopping is cooperative: `stop()` makes the next progress tick raise `WatchStopped`
inside the scan, so a scan in flight ends between batches and every checkpoint already scored stays cached.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from dpo_doctor.discover import CHECKPOINT_RE

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total), as dpo_doctor.scan.pipeline calls it
ScanFn = Callable[[Path, ProgressFn], Path]  # (run_dir, progress) -> report dir
MODEL_FILES = ("config.json", "adapter_config.json")


class WatchStopped(Exception):
    """Raised from the progress callback to end a scan early when the user quits."""


def run_snapshot(run_dir: Path) -> tuple:
    """What a rescan depends on: each model-bearing checkpoint dir (and the root model) with its files' sizes.

    A checkpoint still being written changes its snapshot between polls; the watcher waits until it is stable.
    """
    run_dir = Path(run_dir)
    entries = []
    dirs = [d for d in run_dir.iterdir() if d.is_dir() and CHECKPOINT_RE.match(d.name)] if run_dir.is_dir() else []
    for d in sorted(dirs, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1))) + [run_dir]:
        if not any((d / f).is_file() for f in MODEL_FILES):
            continue
        files = tuple(sorted((f.name, f.stat().st_size) for f in d.iterdir() if f.is_file()))
        entries.append((d.name, files))
    return tuple(entries)


class Watcher:
    """Polls `run_dir` every `poll_s` seconds in a daemon thread and rescans when its snapshot settles on a new value."""

    def __init__(self, run_dir: Path, scan_fn: ScanFn, poll_s: float = 5.0) -> None:
        self.run_dir = Path(run_dir)
        self.scan_fn = scan_fn
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scans = 0

    def start(self, on_report: Callable[[Path], None], on_progress: ProgressFn,
              on_error: Callable[[str], None]) -> None:
        self._thread = threading.Thread(target=self._loop, args=(on_report, on_progress, on_error),
                                        name="dpo-doctor-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.0) -> bool:
        """Ask the loop to end (a scan in flight stops at its next progress tick); True once the thread is gone."""
        self._stop.set()
        if self._thread is not None and timeout > 0:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _progress(self, on_progress: ProgressFn) -> ProgressFn:
        def tick(stage: str, done: int, total: int) -> None:
            if self._stop.is_set():
                raise WatchStopped
            on_progress(stage, done, total)
        return tick

    def _loop(self, on_report, on_progress, on_error) -> None:
        scanned, seen = None, None
        while not self._stop.is_set():
            snap = run_snapshot(self.run_dir)
            # Scan at once on start, later only when the new snapshot held still for one poll (files fully written).
            if snap and snap != scanned and (scanned is None or snap == seen):
                try:
                    report_dir = self.scan_fn(self.run_dir, self._progress(on_progress))
                except WatchStopped:
                    return
                except Exception as exc:  # shown in the dashboard; the loop keeps watching for the next checkpoint
                    on_error(f"scan failed: {exc}")
                else:
                    self.scans += 1
                    on_report(Path(report_dir))
                scanned = snap
            seen = snap
            self._stop.wait(self.poll_s)
