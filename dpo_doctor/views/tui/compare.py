"""The dashboard of a compare report (`dpo-doctor tui OUT` on a `dpo-doctor compare` folder): an overview of the
runs side by side, the checkpoint to ship and the next run's settings, and every checkpoint on quality vs sqrt(KL).

Read-only over the ReportBundle like every view; every string from the report is a literal `Text` (no markup).
Enter on a run says how to open its own scan report.
"""

from __future__ import annotations

import webbrowser

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from dpo_doctor.report import ReportBundle
from dpo_doctor.report_model import CompareReport, CompareRun
from dpo_doctor.views.tui.cells import VERDICT_STYLE, num, plain


def _peak(run: CompareRun, key: str):
    vals = [c.metrics.get(key) for c in run.checkpoints if c.metrics.get(key) is not None]
    return max(vals) if vals else None


def summary(r: CompareReport) -> Text:
    best, rec = r.best, r.recommendation
    text = Text.assemble(Text("compare ", style="bold"), plain(r.name), Text(f" · {len(r.runs)} runs · quality: "),
                         plain(r.quality.label), "\n")
    if best:
        text.append_text(Text.assemble(Text("ship  ", style="bold"), plain(f"{best.run} / {best.checkpoint}",
                                       "bold green"), Text("  (confidence: "), plain(best.confidence), ")\n",
                                       plain(best.reason, "dim"), "\n"))
    else:
        text.append("ship  none: nothing was learned\n", style="bold")
    text.append_text(Text.assemble(Text("next  ", style="bold"), Text(f"beta {num(rec.beta).plain.strip()}, "
                                   f"learning rate {num(rec.learning_rate).plain.strip()}: "),
                                   plain(rec.text, "dim")))
    for w in r.warnings:
        text.append_text(Text.assemble("\n", Text("warning ", style="yellow"), plain(w)))
    return text


class CompareApp(App[None]):
    """One screen: summary, runs table (Enter: how to open a run), checkpoints table."""

    TITLE = "dpo-doctor compare"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("b", "browser", "HTML"), Binding("q", "quit", "Quit"),
                Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(self, bundle: ReportBundle) -> None:
        super().__init__()
        self.bundle = bundle

    def compose(self) -> ComposeResult:
        r = self.bundle.doc
        signal = r.quality.signal or "rewards/accuracies"
        yield Header()
        yield Static(summary(r), id="summary")
        runs = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        for label in ("run", "beta", "lr", "verdict", f"peak {signal}", "diagnoses"):
            runs.add_column(Text(label), key=label)
        best_run = r.best.run if r.best else None
        for x in r.runs:
            runs.add_row(plain(x.name + (" ★" if x.name == best_run else ""), "bold" if x.name == best_run else ""),
                         num(x.beta), num(x.learning_rate),
                         Text(f" {x.verdict} ", style=VERDICT_STYLE.get(x.verdict, "")), num(_peak(x, signal)),
                         plain(", ".join(d.code for d in x.diagnoses) or "none"), key=x.name)
        yield runs
        yield Static(Text("Checkpoints (quality vs sqrt(KL))", style="bold"))
        points = DataTable(id="points", cursor_type="row", zebra_stripes=True)
        for label in ("run", "checkpoint", "step", "quality", "sqrt KL", "held-out acc", "margin"):
            points.add_column(Text(label), key=label)
        pts = self.bundle.points
        best = (r.best.run, r.best.checkpoint) if r.best else (None, None)
        for p in (pts.iter_rows(named=True) if pts is not None else []):
            mark = "bold green" if (p["run"], p["checkpoint"]) == best else ""
            points.add_row(plain(p["run"], mark), plain(p["checkpoint"], mark), num(p["step"]), num(p["quality"]),
                           num(p["sqrt_kl"]), num(p["accuracy"]), num(p["margin"]))
        yield points
        yield Footer()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "runs":
            return
        run = self.bundle.doc.runs[event.cursor_row]
        self.notify(f"open this run's scan with: dpo-doctor tui {self.bundle.path / run.report}", timeout=8,
                    markup=False)

    def action_browser(self) -> None:
        path = self.bundle.path / "report.html"
        if not path.is_file():
            self.notify("no report.html here: render it with `dpo-doctor report DIR`", severity="warning",
                        markup=False)
            return
        webbrowser.open(path.resolve().as_uri())
        self.notify(f"opened {path.name} in the browser", markup=False)
