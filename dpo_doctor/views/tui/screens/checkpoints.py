"""Checkpoints: a table of checkpoints x key metrics with trend markers and sparklines; the highlighted row's
full metric list and the diagnoses citing it below (Tab to them, Enter to open one)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from dpo_doctor.views.tui.cells import fmt, metric_cell, one_line, plain, severity, sparkline, trend
from dpo_doctor.views.tui.screens.base import ReportScreen

KEY_METRICS = {"rewards/margins": "margin", "rewards/accuracies": "acc", "drift/chosen": "drift w",
               "drift/rejected": "drift l", "gen/kl_mean": "KL", "gen/length_ratio": "len x"}


def key_metrics(report) -> list[str]:
    return [k for k in KEY_METRICS if any(k in c.metrics for c in report.checkpoints)]


def trend_row(report, keys: list[str]) -> list[Text]:
    """The table's last row: one sparkline per key metric across all checkpoints, in step order."""
    lines = [sparkline([c.metrics.get(k) for c in report.checkpoints][-12:]) for k in keys]
    return [Text("trend", style="italic dim"), Text("")] + [Text.assemble(s, justify="right") for s in lines] + [Text("")]


def metric_detail(report, index: int) -> Table:
    """Every metric of one checkpoint with its change since the previous checkpoint, unit and bad direction."""
    ckpts = report.checkpoints
    cur = ckpts[index].metrics
    prev = ckpts[index - 1].metrics if index > 0 else {}
    info = report.doc.metric_info
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for col, justify in (("metric", "left"), ("value", "right"), ("", "center"), ("prev", "right"), ("unit", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    for name, value in cur.items():
        meta = info.get(name)
        table.add_row(plain(name), Text(fmt(value)), trend(prev.get(name), value, meta.bad if meta else None),
                      Text(fmt(prev.get(name)) if prev else "", style="dim"), plain(meta.unit if meta else "", "dim"))
    return table


class CheckpointsScreen(ReportScreen):
    BINDINGS = [Binding("enter", "open_pairs", "Its pairs")]

    def body(self) -> ComposeResult:
        yield Static(Text("▲▼ vs the previous checkpoint: green better, red worse · Enter: its pairs",
                          style="dim"), id="trends")
        yield DataTable(id="checkpoints", cursor_type="row", zebra_stripes=True)
        with Vertical(id="ckpt-detail"):
            yield DataTable(id="cited", cursor_type="row")
            with VerticalScroll(id="ckpt-metrics"):
                yield Static(id="ckpt-metrics-table")

    def show_report(self, report) -> None:
        keys = key_metrics(report)
        info = report.doc.metric_info
        table = self.query_one("#checkpoints", DataTable)
        table.clear(columns=True)
        table.add_column(Text("checkpoint"), key="checkpoint")
        table.add_column(Text("step", justify="right"), key="step")
        for k in keys:
            table.add_column(Text(KEY_METRICS[k], justify="right"), key=k)
        table.add_column(Text("diag", justify="right"), key="diag")
        ckpts = report.checkpoints
        for i, c in enumerate(ckpts):
            m, prev = c.metrics, ckpts[i - 1].metrics if i else {}
            n_diag = len(report.diagnoses_for(c.name))
            table.add_row(plain(c.name), Text(str(c.step), justify="right"),
                          *[metric_cell(prev.get(k), m.get(k), info[k].bad if k in info else None) for k in keys],
                          Text(str(n_diag) if n_diag else "·", style="bold red" if n_diag else "dim", justify="right"),
                          key=c.name)
        if len(ckpts) > 1:
            table.add_row(*trend_row(report, keys), key="__trend__")
        names = report.checkpoint_names
        if self.app.checkpoint in names:
            table.move_cursor(row=names.index(self.app.checkpoint))
        self._show_detail(table.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "checkpoints":
            self._show_detail(event.cursor_row)

    def _show_detail(self, index: int) -> None:
        report = self.app.report
        if report is None or not (0 <= index < len(report.checkpoints)):
            return
        name = report.checkpoints[index].name
        self.app.checkpoint = name
        self.query_one("#ckpt-metrics-table", Static).update(metric_detail(report, index))
        cited = self.query_one("#cited", DataTable)
        cited.clear(columns=True)
        cited.add_column(Text("cites"), key="sev")
        cited.add_column(Text(f"diagnoses of {name} (Tab, then Enter to open)"), key="msg")
        cited.display = bool(report.diagnoses_for(name))
        for i, d in enumerate(report.diagnoses_for(name)):
            cited.add_row(severity(d.severity), Text.assemble(plain(d.code, "bold"), " ", one_line(d.message, 80)),
                          key=str(i))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        report = self.app.report
        if event.data_table.id == "checkpoints":
            self.action_open_pairs()
        elif report is not None:
            diags = report.diagnoses_for(self.app.checkpoint)
            if 0 <= event.cursor_row < len(diags):
                from dpo_doctor.views.tui.screens.diagnosis import DiagnosisScreen

                self.app.push_screen(DiagnosisScreen(diags[event.cursor_row], report))

    def action_open_pairs(self) -> None:
        self.app.switch_mode("pairs")
