"""Rich `Text` cells for the dashboard. Every string from a report goes through `Text(...)`, never markup parsing,
so a prompt containing `[bold]` or `[/]` shows literally and cannot style or break the screen."""

from __future__ import annotations

import math

from rich.text import Text

SEVERITY_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}
VERDICT_STYLE = {"error": "bold white on red", "warning": "bold black on yellow", "healthy": "bold black on green",
                 "no-failure-found": "bold white on grey37"}
BARS = "▁▂▃▄▅▆▇█"


def fmt(value) -> str:
    """A number as a short string: 3 significant-looking decimals, scientific for tiny/huge, '—' when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.2e}"
        return f"{value:.3f}"
    return str(value)


def plain(value, style: str = "") -> Text:
    """Untrusted text as a literal `Text` (no markup, no emoji codes)."""
    return Text(str(value) if value is not None else "—", style=style)


def num(value, style: str = "") -> Text:
    return Text(fmt(value), style=style, justify="right")


def severity(sev: str) -> Text:
    return Text(str(sev).upper(), style=SEVERITY_STYLE.get(sev, ""))


def one_line(value, width: int = 60) -> Text:
    """A long text flattened to one line and cut to `width` characters, for table cells."""
    flat = " ".join(str(value or "").split())
    return Text(flat if len(flat) <= width else flat[: width - 1] + "…")


def tail(value, width: int = 50) -> Text:
    """A path cut from the left (its end says the most), literal."""
    s = str(value) if value is not None else "—"
    return Text(s if len(s) <= width else "…" + s[-(width - 1):])


def sparkline(values: list) -> Text:
    """Eight-level bars across checkpoints; missing values show as a space."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return Text("")
    lo, hi = min(finite), max(finite)
    chars = []
    for v in values:
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            chars.append(" ")
        else:
            chars.append(BARS[0 if hi == lo else round((v - lo) / (hi - lo) * (len(BARS) - 1))])
    return Text("".join(chars), style="cyan")


def trend(prev, cur, bad: str | None) -> Text:
    """▲/▼ against the previous checkpoint: red when it moves the bad way, green the good way, dim when neutral."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (prev, cur)) or prev == cur:
        return Text(" ")
    up = cur > prev
    if bad is None:
        style = "dim"
    else:
        style = "red" if (up and bad == "high") or (not up and bad == "low") else "green"
    return Text("▲" if up else "▼", style=style)


def metric_cell(prev, cur, bad: str | None) -> Text:
    return Text.assemble(Text(fmt(cur)), " ", trend(prev, cur, bad), justify="right")
