"""Samples: for one prompt, the reference's completions next to the selected checkpoint's."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from dpo_doctor.views.tui.cells import fmt, one_line, plain
from dpo_doctor.views.tui.screens.base import ReportScreen
from dpo_doctor.views.tui.screens.pairs import CKPT, step_checkpoint


def completions(rows, title: str) -> Group:
    """A column of completions, each headed by its stored length, log-probs and KL."""
    parts = [Text(title, style="bold underline")]
    if rows.is_empty():
        parts.append(Text("no samples for this prompt", style="dim"))
    for r in rows.iter_rows(named=True):
        head = (f"#{r.get('sample_idx')} {'greedy' if r.get('greedy') else 'sampled'} · {r.get('n_tokens')} tok · "
                f"logp {fmt(r.get('logp'))} · ref {fmt(r.get('ref_logp'))} · KL {fmt(r.get('kl'))}")
        parts += [Text(head, style="cyan"), plain(r.get("text") or ""), Text("")]
    return Group(*parts)


class SamplesScreen(ReportScreen):
    BINDINGS = [
        Binding("left_square_bracket", "checkpoint(-1)", "prev", key_display="[", group=CKPT),
        Binding("right_square_bracket", "checkpoint(1)", "next", key_display="]", group=CKPT),
    ]

    def body(self) -> ComposeResult:
        yield Static(id="samples-info")
        yield OptionList(id="prompts")
        with Horizontal(id="sample-columns"):
            with VerticalScroll(id="ref-col"):
                yield Static(id="ref-samples")
            with VerticalScroll(id="policy-col"):
                yield Static(id="policy-samples")

    def show_report(self, report) -> None:
        options = self.query_one("#prompts", OptionList)
        options.clear_options()
        self.prompt_ids = [pid for pid, _ in report.sample_prompts()]
        options.add_options([Option(one_line(text, 200), id=str(pid)) for pid, text in report.sample_prompts()])
        if self.prompt_ids:
            options.highlighted = 0
        self.fill()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.app.report is not None:
            self.fill()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.fill()

    def fill(self) -> None:
        report, app = self.app.report, self.app
        if report is None:
            return
        if report.samples is None:
            self.query_one("#samples-info", Static).update(Text(
                "no samples.parquet: this scan ran with --no-generate; re-scan without it to see completions", style="yellow"))
            return
        if app.checkpoint not in report.checkpoint_names:
            app.checkpoint = report.default_checkpoint()
        index = self.query_one("#prompts", OptionList).highlighted
        if index is None or not self.prompt_ids:
            return
        pid = self.prompt_ids[index]
        self.query_one("#samples-info", Static).update(Text.assemble(
            "prompt ", Text(f"{index + 1}/{len(self.prompt_ids)}", style="bold"), " · reference vs ",
            plain(app.checkpoint, "bold"), "  ([ ] other checkpoint, ↑↓ other prompt)"))
        self.query_one("#ref-samples", Static).update(completions(report.samples_for("reference", pid), "reference"))
        self.query_one("#policy-samples", Static).update(completions(report.samples_for(app.checkpoint, pid),
                                                                     str(app.checkpoint)))

    def action_checkpoint(self, delta: int) -> None:
        step_checkpoint(self.app, delta)
        self.fill()
