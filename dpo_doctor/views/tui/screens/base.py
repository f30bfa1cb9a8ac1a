"""The shared shape of the dashboard's main screens: header, body, footer, and a re-render on report change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class ReportScreen(Screen):
    """A main screen (one per app mode). Subclasses compose `body()` and fill it in `show_report()`.

    The app's `report` is reactive: a reload (watch mode, or picking another scan) re-renders the screen on view
    at once and any other screen when the user comes back to it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        yield Static()

    def on_mount(self) -> None:
        self.watch(self.app, "report", self._report_changed, init=False)
        self._refresh_if_stale()

    def on_screen_resume(self) -> None:
        self._refresh_if_stale()

    def _report_changed(self, _report) -> None:
        if self.is_current:
            self._refresh_if_stale()

    def _refresh_if_stale(self) -> None:
        report = self.app.report
        if report is not None and report is not self._shown:
            self._shown = report
            self.show_report(report)

    def show_report(self, report) -> None:
        """Fill the widgets from `report` (a data.TuiReport)."""
