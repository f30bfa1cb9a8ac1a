"""Pairs: one checkpoint's per-pair table, sortable by margin, chosen drift and length difference, filtered by a
text search over prompt/chosen/rejected; Enter opens the pair."""

from __future__ import annotations

import polars as pl
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from dpo_doctor.views.tui.cells import num, one_line
from dpo_doctor.views.tui.screens.base import ReportScreen

SORT = Binding.Group("sort")
CKPT = Binding.Group("ckpt", compact=True)
SORTS = {"margin": "margin", "drift_chosen": "chosen drift", "len_diff": "length diff", "pair_id": "pair id"}
COLUMNS = (("pair_id", "id"), ("margin", "margin"), ("drift_chosen", "Δ chosen"), ("drift_rejected", "Δ rejected"),
           ("len_chosen", "len w"), ("len_rejected", "len l"), ("len_diff", "Δ len"))


def filter_rows(rows: pl.DataFrame, query: str) -> pl.DataFrame:
    """Case-insensitive literal substring match on the prompt, chosen or rejected text."""
    if not query or rows.is_empty():
        return rows
    q = query.lower()
    hit = pl.lit(False)
    for col in ("prompt", "chosen", "rejected"):
        hit = hit | pl.col(col).fill_null("").str.to_lowercase().str.contains(q, literal=True)
    return rows.filter(hit)


def step_checkpoint(app, delta: int) -> None:
    """Move the app's selected checkpoint to the previous/next one (shared by the pairs and samples screens)."""
    names = app.report.checkpoint_names if app.report else []
    if not names:
        return
    i = names.index(app.checkpoint) if app.checkpoint in names else len(names) - 1
    app.checkpoint = names[max(0, min(len(names) - 1, i + delta))]


class PairsScreen(ReportScreen):
    AUTO_FOCUS = "#pairs"
    BINDINGS = [
        Binding("m", "sort('margin')", "margin", group=SORT),
        Binding("d", "sort('drift_chosen')", "chosen drift", group=SORT),
        Binding("l", "sort('len_diff')", "length diff", group=SORT),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("escape", "clear_search", "Clear", show=False),
        Binding("left_square_bracket", "checkpoint(-1)", "prev", key_display="[", group=CKPT),
        Binding("right_square_bracket", "checkpoint(1)", "next", key_display="]", group=CKPT),
    ]

    def body(self) -> ComposeResult:
        yield Static(id="pairs-info")
        yield Input(placeholder="search prompt / chosen / rejected (Enter: back to the table, Esc: clear)", id="search")
        table = DataTable(id="pairs", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(Text(label, justify="right"), key=key)
        table.add_column(Text("prompt"), key="prompt")
        yield table

    def on_mount(self) -> None:
        self.rows = pl.DataFrame()
        super().on_mount()

    def show_report(self, report) -> None:
        self.fill()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if getattr(self, "_filled_for", None) != self.app.checkpoint:
            self.fill()

    def fill(self) -> None:
        """Rebuild the table for the app's checkpoint with the current sort and search."""
        report, app = self.app.report, self.app
        if report is None:
            return
        if app.checkpoint not in report.checkpoint_names:
            app.checkpoint = report.default_checkpoint()
        self._filled_for = app.checkpoint
        column, descending = app.pairs_sort
        rows = filter_rows(report.pair_rows(app.checkpoint), app.pairs_query)
        if not rows.is_empty():
            rows = rows.sort(column, descending=descending, nulls_last=True)
        self.rows = rows
        table = self.query_one("#pairs", DataTable)
        table.clear()
        for r in rows.iter_rows(named=True):
            style = "dim" if r.get("excluded") else ""
            table.add_row(*[num(r[k], style) for k, _ in COLUMNS], one_line(r.get("prompt"), 120), key=str(r["pair_id"]))
        total = report.pair_rows(app.checkpoint).height if report.pairs is not None else 0
        names = report.checkpoint_names
        pos = f"({names.index(app.checkpoint) + 1}/{len(names)})" if app.checkpoint in names else ""
        info = Text.assemble(Text(str(app.checkpoint), style="bold"), f" {pos} · {rows.height} of {total} pairs · sort: ",
                             Text(f"{SORTS[column]} {'↓' if descending else '↑'}", style="bold"), " · filter: ",
                             Text(repr(app.pairs_query) if app.pairs_query else "none", style="bold"))
        if report.pairs is None:
            info = Text("no pairs.parquet in this report dir", style="yellow")
        self.query_one("#pairs-info", Static).update(info)

    def action_sort(self, column: str) -> None:
        current, descending = self.app.pairs_sort
        self.app.pairs_sort = (column, not descending if column == current else False)
        self.fill()

    def action_checkpoint(self, delta: int) -> None:
        step_checkpoint(self.app, delta)
        self.fill()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.value = self.app.pairs_query
        search.focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        search.display = False
        self.app.pairs_query = ""
        self.fill()
        self.query_one("#pairs", DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.app.pairs_query = event.value
        self.fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.query_one("#pairs", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < self.rows.height:
            from dpo_doctor.views.tui.screens.pair import PairScreen

            self.app.push_screen(PairScreen(self.rows.row(event.cursor_row, named=True), self.app.report))
