"""Picker: the scans found under a folder (default reports/); Enter opens one."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from dpo_doctor.views.tui.cells import VERDICT_STYLE, plain
from dpo_doctor.views.tui.data import report_summary


class PickerScreen(Screen):
    BINDINGS = [Binding("enter", "open", "Open"), Binding("escape", "back", "Back")]

    def __init__(self, choices: list[Path]) -> None:
        super().__init__()
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"{len(self.choices)} scans found; pick one (Enter)", style="bold"), id="picker-info")
        table = DataTable(id="picker", cursor_type="row", zebra_stripes=True)
        for label in ("run", "verdict", "checkpoints", "diagnoses", "created", "folder"):
            table.add_column(Text(label), key=label)
        for path in self.choices:
            s = report_summary(path)
            table.add_row(plain(s["name"], "bold"), Text(f" {s['verdict']} ", style=VERDICT_STYLE.get(s["verdict"], "")),
                          Text(str(s["checkpoints"]), justify="right"), Text(str(s["diagnoses"]), justify="right"),
                          plain(s["created"]), plain(path), key=str(path))
        yield table
        yield Footer()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.open_report(self.choices[event.cursor_row])

    def action_open(self) -> None:
        table = self.query_one("#picker", DataTable)
        if self.choices:
            self.app.open_report(self.choices[table.cursor_row])

    def action_back(self) -> None:
        if self.app.report is None:
            self.app.exit()
        else:
            self.app.pop_screen()
