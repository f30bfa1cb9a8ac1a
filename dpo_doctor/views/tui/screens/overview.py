"""Overview: the verdict, the run's facts, and every diagnosis (Enter opens one)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from dpo_doctor.report_model import DataAuditReport
from dpo_doctor.views.verdict_words import VERDICT_WORDS, no_finding_sentence, verdict_of_report
from dpo_doctor.views.tui.cells import VERDICT_STYLE, fmt, one_line, plain, severity, sparkline, tail
from dpo_doctor.views.tui.screens.base import ReportScreen


def _fact(label: str, *parts) -> Text:
    return Text.assemble(Text(f"{label:<12}", style="bold"), *parts, "\n")


def run_facts(report) -> Text:
    """The run at a glance; every value from the report is a literal `Text`."""
    doc = report.doc
    if doc.kind == "data_audit":
        return audit_facts(doc)
    run, ref, data = doc.run, doc.reference, doc.data
    names = report.checkpoint_names
    best = doc.best_checkpoint
    facts = Text()
    facts.append_text(_fact("run", plain(run.name), Text(
        f" · {run.framework or '?'} · {run.loss_type or 'loss ?'} · beta {run.beta}"
        f" ({run.beta_source or '?'})")))
    facts.append_text(_fact("reference", tail(ref.path if ref else None, 50),
                            Text(f" ({(ref.kind if ref else None) or '?'})")))
    facts.append_text(_fact("data", tail(data.path if data else None, 34), Text(
        f" · {(data.format if data else None) or '?'} · {data.n_pairs if data else '?'} pairs "
        f"({data.n_excluded if data else 0} excluded)")))
    span = f"{names[0]} … {names[-1]}" if len(names) > 1 else (names[0] if names else "none")
    facts.append_text(_fact("checkpoints", Text(f"{len(names)}: "), plain(span)))
    facts.append_text(_fact("best", plain(best.name if best else "—", style="bold green"),
                            Text("  " + one_line(best.reason if best else "", 70).plain, style="dim")))
    facts.append_text(_fact("train loss", train_loss(report)))
    warnings = doc.warnings
    facts.append_text(_fact("warnings", Text(f"{len(warnings)}", style="yellow" if warnings else ""),
                            one_line(f": {warnings[0]}" if warnings else "", 60)))
    facts.rstrip()
    return facts


def audit_facts(doc: DataAuditReport) -> Text:
    """A data audit (`dpo-doctor data`) at a glance: the data, the reference if any, the filter file."""
    data, ref = doc.data, doc.reference
    stats = data.stats
    facts = Text()
    facts.append_text(_fact("data audit", tail(data.path, 50), Text(
        f" · {data.format or '?'} · {data.n_pairs} pairs")))
    facts.append_text(_fact("reference", tail(ref.path, 50) if ref else Text("none (no --ref)")))
    facts.append_text(_fact("longer wins", Text(fmt(stats.get("length/longer_wins_accuracy")))))
    facts.append_text(_fact("duplicates", Text(fmt(stats.get("data/duplicate_frac")))))
    facts.append_text(_fact("filter", Text(f"{doc.audit.filter.n_pairs if doc.audit else 0} pair ids in "
                                           "filter_ids.jsonl")))
    warnings = doc.warnings
    facts.append_text(_fact("warnings", Text(f"{len(warnings)}", style="yellow" if warnings else ""),
                            one_line(f": {warnings[0]}" if warnings else "", 60)))
    facts.rstrip()
    return facts


def train_loss(report) -> Text:
    """The logged train loss as a sparkline with its first and last values (no log: a dash)."""
    log = report.train_log
    if log is None or "loss" not in log.columns:
        return Text("—")
    if "split" in log.columns:
        log = log.filter(log["split"] == "train")
    values = [v for v in log.sort("step")["loss"].to_list() if v is not None]
    if not values:
        return Text("—")
    return Text.assemble(sparkline(values[-40:]), f"  {fmt(values[0])} → {fmt(values[-1])}")


class OverviewScreen(ReportScreen):
    BINDINGS = [Binding("enter", "open_diagnosis", "Details", show=True)]

    def body(self) -> ComposeResult:
        yield Static(id="verdict")
        yield Static(id="facts")
        yield Static(Text("Diagnoses  (Enter: evidence and fix)", style="bold"), id="diag-title")
        table = DataTable(id="diagnoses", cursor_type="row", zebra_stripes=True)
        table.add_column(Text("severity"), key="severity", width=8)
        table.add_column(Text("code"), key="code", width=7)
        table.add_column(Text("name"), key="name")
        table.add_column(Text("checkpoint"), key="checkpoint")
        table.add_column(Text("message"), key="message")
        yield table

    def on_mount(self) -> None:
        super().on_mount()
        if self.app.report is None:
            self.query_one("#verdict", Static).update(Text(" WAITING ", style="bold black on cyan") + Text(
                "  no report yet: the first scan is running (progress in the title bar)"))

    def show_report(self, report) -> None:
        doc = report.doc
        verdict = verdict_of_report(doc)
        self.query_one("#verdict", Static).update(Text.assemble(
            Text(f" {VERDICT_WORDS.get(verdict, verdict.upper())} ", style=VERDICT_STYLE.get(verdict, "bold reverse")),
            "  ",
            plain(doc.summary or "")))
        self.query_one("#facts", Static).update(run_facts(report))
        table = self.query_one("#diagnoses", DataTable)
        table.clear()
        for i, d in enumerate(report.diagnoses):
            table.add_row(severity(d.severity), plain(d.code), plain(d.name or d.kind),
                          plain(d.checkpoint or "run-wide"), one_line(d.message, 200), key=str(i))
        if not report.diagnoses:
            table.add_row(Text("—"), Text(""), Text("no diagnoses"), Text(""), one_line(no_finding_sentence(doc), 200))

    def action_open_diagnosis(self) -> None:
        self._open(self.query_one("#diagnoses", DataTable).cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._open(event.cursor_row)

    def _open(self, index: int) -> None:
        report = self.app.report
        if report is not None and 0 <= index < len(report.diagnoses):
            from dpo_doctor.views.tui.screens.diagnosis import DiagnosisScreen

            self.app.push_screen(DiagnosisScreen(report.diagnoses[index], report))
