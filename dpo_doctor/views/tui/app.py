"""The dashboard app: four modes (overview, checkpoints, pairs, samples) over one reactive `report`.

`dpo-doctor tui` builds it with a loaded report (or a list of scans to pick from); `dpo-doctor watch` adds a
`Watcher` whose thread posts progress and new report dirs back as messages (post_message is thread-safe).
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.reactive import var

from dpo_doctor.errors import UserError
from dpo_doctor.views.tui.data import TuiReport, open_report
from dpo_doctor.views.tui.screens.checkpoints import CheckpointsScreen
from dpo_doctor.views.tui.screens.overview import OverviewScreen
from dpo_doctor.views.tui.screens.pairs import PairsScreen
from dpo_doctor.views.tui.screens.picker import PickerScreen
from dpo_doctor.views.tui.screens.samples import SamplesScreen
from dpo_doctor.views.tui.watch import Watcher

NEEDS_REPORT = {"goto", "browser"}


class ScanProgress(Message):
    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__()
        self.stage, self.done, self.total = stage, done, total


class ScanFinished(Message):
    def __init__(self, report_dir: Path) -> None:
        super().__init__()
        self.report_dir = report_dir


class ScanFailed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class DoctorApp(App[None]):
    """Browse one scan. `report`: the loaded scan (None while a watch waits for its first scan or a pick);
    `choices`: report dirs for the picker; `watcher`: rescans a live run in the background."""

    CSS_PATH = "app.tcss"
    TITLE = "dpo-doctor"
    ENABLE_COMMAND_PALETTE = False
    MODES = {"overview": OverviewScreen, "checkpoints": CheckpointsScreen, "pairs": PairsScreen,
             "samples": SamplesScreen}
    DEFAULT_MODE = "overview"
    BINDINGS = [
        Binding("o", "goto('overview')", "Overview"),
        Binding("c", "goto('checkpoints')", "Ckpts"),
        Binding("p", "goto('pairs')", "Pairs"),
        Binding("s", "goto('samples')", "Samples"),
        Binding("b", "browser", "HTML"),
        Binding("r", "pick", "Scans", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    report: var[TuiReport | None] = var(None, init=False)

    def __init__(self, report: TuiReport | None = None, choices: list[Path] | None = None,
                 watcher: Watcher | None = None) -> None:
        super().__init__()
        self.choices = list(choices or [])
        self.watcher = watcher
        self.checkpoint: str | None = None
        self.pairs_sort: tuple[str, bool] = ("margin", False)
        self.pairs_query = ""
        self.set_report(report)

    def set_report(self, report: TuiReport | None) -> None:
        """Show `report`; keep the selected checkpoint when the new report still has it (watch reloads)."""
        if report is not None and self.checkpoint not in report.checkpoint_names:
            self.checkpoint = report.default_checkpoint()
        self.report = report
        if report is not None:
            self.sub_title = report.doc.run.name if report.doc.kind == "scan" else report.dir.name
        self.refresh_bindings()

    def on_mount(self) -> None:
        if self.report is None and self.choices:
            self.push_screen(PickerScreen(self.choices))
        if self.watcher is not None:
            self.sub_title = f"watching {self.watcher.run_dir.name}"
            self.watcher.start(on_report=lambda d: self.post_message(ScanFinished(d)),
                               on_progress=lambda s, d, t: self.post_message(ScanProgress(s, d, t)),
                               on_error=lambda text: self.post_message(ScanFailed(text)))

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    crash: Exception | None = None  # an exception that ended the app (a bug): the CLI saves it and exits 3

    def _handle_exception(self, error: Exception) -> None:
        """Textual's hook for an unhandled exception (it exits the app): keep the exception for the CLI, which saves
        the traceback to a file and prints one line, instead of Textual's full-screen traceback with locals."""
        super()._handle_exception(error)
        self.crash = self.crash or error
        getattr(self, "_exit_renderables", []).clear()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in NEEDS_REPORT and self.report is None:
            return False
        if action == "browser" and self.report.html_path is None:
            return False  # hidden: nothing to open
        if action == "pick" and not self.choices:
            return False
        return True

    def action_goto(self, mode: str) -> None:
        while len(self.screen_stack) > 1:  # close a detail screen first, so the mode switch shows the main screen
            self.pop_screen()
        self.switch_mode(mode)

    def action_browser(self) -> None:
        path = self.report.html_path if self.report else None
        if path is None:
            self.notify("no report.html here: render it with `dpo-doctor report DIR`", severity="warning")
            return
        webbrowser.open(path.resolve().as_uri())
        self.notify(f"opened {path.name} in the browser")

    def action_pick(self) -> None:
        self.push_screen(PickerScreen(self.choices))

    def open_report(self, path: Path) -> None:
        try:
            report = open_report(path)
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.set_report(report)
        if isinstance(self.screen, PickerScreen):
            self.pop_screen()

    def on_scan_progress(self, msg: ScanProgress) -> None:
        self.sub_title = f"watching {self.watcher.run_dir.name}: {msg.stage} {msg.done}/{msg.total}"

    def on_scan_finished(self, msg: ScanFinished) -> None:
        try:
            report = open_report(msg.report_dir)
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.set_report(report)
        self.sub_title = f"{self.sub_title} · watching, {len(report.checkpoints)} checkpoints scanned"
        self.notify(f"report updated: {len(report.checkpoints)} checkpoints")

    def on_scan_failed(self, msg: ScanFailed) -> None:
        self.notify(msg.text, severity="error", timeout=10)
        reason = msg.text.removeprefix("scan failed: ").splitlines()[0] if msg.text else "unknown reason"
        self.sub_title = f"watching {self.watcher.run_dir.name}: last scan failed: {reason[:120]}"
