"""Diagnosis detail: the evidence values next to their thresholds, the recommendation, the rule's explanation."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from dpo_doctor.report_model import DiagnosisRecord, Recommendation
from dpo_doctor.views.tui.cells import fmt, num, plain, severity


def versus(value, threshold) -> Text:
    """Which side of its threshold a stored evidence value lies on (a comparison for display, not a metric)."""
    if not all(isinstance(v, (int, float)) for v in (value, threshold)):
        return Text("")
    return Text(">" if value > threshold else "<" if value < threshold else "=", style="bold", justify="center")


def recommendation_text(rec: Recommendation) -> Text:
    out = Text()
    if rec.text:
        out.append_text(plain(rec.text))
    bits = [("beta", rec.beta), ("loss variant", rec.variant)]
    bits += [(str(k), v) for k, v in rec.params.items()]
    for label, value in bits:
        if value is not None:
            out.append_text(Text.assemble("\n  ", Text(label, style="bold"), " = ", plain(fmt(value))))
    return out if out.plain else Text("—", style="dim")


class DiagnosisScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("backspace", "app.pop_screen", "Back", show=False)]

    def __init__(self, diagnosis: DiagnosisRecord, report) -> None:
        super().__init__()
        self.diagnosis = diagnosis
        self.report = report

    def compose(self) -> ComposeResult:
        d = self.diagnosis
        yield Header()
        with VerticalScroll(id="diagnosis"):
            yield Static(Text.assemble(severity(d.severity), "  ", plain(d.code, "bold"), "  ",
                                       plain(d.name), Text(" · ", style="dim"), plain(d.kind, "dim"),
                                       Text(" · ", style="dim"), plain(d.checkpoint or "run-wide")),
                         id="diag-head")
            yield Static(plain(d.message), id="diag-message")
            yield Static(Text("Evidence", style="bold underline"), classes="section")
            yield self._evidence_table()
            yield Static(Text("Recommendation", style="bold underline"), classes="section")
            yield Static(recommendation_text(d.recommendation), id="diag-fix")
            if d.explanation:
                yield Static(Text("Explanation", style="bold underline"), classes="section")
                yield Static(plain(d.explanation), id="diag-explanation")
        yield Footer()

    def _evidence_table(self) -> DataTable:
        table = DataTable(id="evidence", cursor_type="row", show_cursor=False)
        for label in ("metric", "value", "vs", "threshold", "reference", "unit"):
            table.add_column(Text(label), key=label)
        info = self.report.doc.metric_info
        for metric, ev in self.diagnosis.evidence.items():
            table.add_row(plain(metric), num(ev.value, "bold"), versus(ev.value, ev.threshold),
                          num(ev.threshold), num(ev.reference_value),
                          plain(info[metric].unit if metric in info else "", "dim"))
        return table
