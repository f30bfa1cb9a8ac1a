"""One pair: its prompt, chosen and rejected texts, and their log-probs under the policy and the reference."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from dpo_doctor.views.tui.cells import fmt, plain


def numbers(row: dict) -> Table:
    """Stored per-pair values side by side for chosen and rejected (drift = logp - ref logp, shown as stored rows)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    table.add_column("logp", justify="right")
    table.add_column("ref logp", justify="right")
    table.add_column("drift", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("reward", justify="right")
    for side, color in (("chosen", "green"), ("rejected", "red")):
        table.add_row(Text(side, style=f"bold {color}"), fmt(row.get(f"logp_{side}")), fmt(row.get(f"ref_logp_{side}")),
                      fmt(row.get(f"drift_{side}")), fmt(row.get(f"len_{side}")), fmt(row.get(f"reward_{side}")))
    return table


class PairScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("backspace", "app.pop_screen", "Back", show=False)]

    def __init__(self, row: dict, report) -> None:
        super().__init__()
        self.row = row
        self.report = report

    def compose(self) -> ComposeResult:
        r = self.row
        yield Header()
        with VerticalScroll(id="pair"):
            yield Static(Text.assemble(Text(f"pair {r.get('pair_id')}", style="bold"), " at ", plain(r.get("checkpoint")),
                                       f" · margin {fmt(r.get('margin'))}",
                                       Text(" · excluded (chosen == rejected)", style="yellow") if r.get("excluded") else ""),
                         id="pair-head")
            yield Static(numbers(r), id="pair-numbers")
            for field in ("prompt", "chosen", "rejected"):
                box = Static(plain(r.get(field) or ""), id=f"pair-{field}", classes="textbox")
                box.border_title = field
                yield box
        yield Footer()
