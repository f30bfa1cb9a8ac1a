"""The report's Plotly figures, built from report.json and the Parquet tables (never a recomputed metric).

Each builder returns `Plot`s: a stable id, the metrics it shows (so a diagnosis card can link its evidence to the
figure), and the figure. Every text that reaches Plotly from data (checkpoint names, prompts, labels) goes through
`plain()`: Plotly renders a small HTML subset (<a href>, <b>, <br>) in titles, legends and hover labels, and decodes
entities only for display, so escaping `& < >` keeps untrusted text inert there. The HTML page then escapes the
figure JSON a second time for the <script> tag (see html.py).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from dpo_doctor.report import ReportBundle
from dpo_doctor.report_model import CheckpointRecord, ScanReport

MAX_SCATTER = 1500  # points drawn in the margin-vs-length scatter; the scan's statistics use every pair
N_BINS = 40  # shared bins of the margin histograms
MAX_RIDGES = 20  # checkpoints drawn in the histogram ridgeline (evenly spaced, first and last kept)
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


@dataclass(frozen=True)
class Series:
    """One per-checkpoint metric line; `right` puts it on a second y-axis (e.g. an accuracy next to margins)."""

    key: str
    label: str
    right: bool = False


@dataclass(frozen=True)
class Trend:
    """A per-checkpoint trend figure: which metrics, axis titles, and a reference level to draw (if any)."""

    id: str
    title: str
    series: tuple[Series, ...]
    y_title: str
    y2_title: str = ""
    baseline: float | None = None  # e.g. 1.0 for "ratio to the reference", 0.0 for drift
    band: tuple[str, str, str] | None = None  # (series key, low key, high key): a shaded interval around a line
    y2_range: tuple[float, float] | None = None  # fixed right axis for fractions, so 0..1 reads as 0..1


@dataclass(frozen=True)
class Plot:
    id: str
    title: str
    fig: go.Figure
    metrics: tuple[str, ...] = field(default=())
    wide: bool = False


TRENDS = (
    Trend("margins", "Reward margins and preference accuracy",
          (Series("rewards/margins", "mean margin"), Series("margins/q50", "median margin"),
           Series("rewards/accuracies", "accuracy (reward)", True),
           Series("accuracy/ranking", "accuracy (ranking)", True),
           Series("margins/negative_frac", "negative-margin fraction", True)),
          "margin (beta x nats)", "fraction", band=("margins/q50", "margins/q25", "margins/q75"), y2_range=(0, 1.05)),
    Trend("drift", "Log-prob drift vs the reference (chosen / rejected)",
          (Series("drift_per_token/chosen", "chosen, per token"),
           Series("drift_per_token/rejected", "rejected, per token"),
           Series("drift/chosen_fell_frac", "chosen fell (fraction)", True),
           Series("drift/rejected_fell_frac", "rejected fell (fraction)", True)),
          "log pi - log pi_ref (nats / token)", "fraction of pairs", baseline=0.0, y2_range=(0, 1.05)),
    Trend("kl", "KL(pi || pi_ref) on the policy's own samples",
          (Series("gen/kl_mean", "exact KL (95% CI band)"), Series("gen/kl_k1_mean", "k1 estimate"),
           Series("gen/kl_k3_mean", "k3 estimate"),
           Series("drift/kl_on_data_per_token", "KL on data, per token", True)),
          "nats / completion", "nats / token", band=("gen/kl_mean", "gen/kl_ci_low", "gen/kl_ci_high")),
    Trend("length", "Generated length vs the reference",
          (Series("gen/length_ratio", "sampled length ratio"), Series("gen/greedy_length_ratio", "greedy length ratio"),
           Series("gen/reward_length_r2", "R^2(reward ~ length)", True)),
          "ratio to the reference", "R^2", baseline=1.0, y2_range=(0, 1.05)),
    Trend("diversity", "Diversity of samples",
          (Series("gen/ead_per_input", "EAD per input"), Series("gen/ead_across_input", "EAD across inputs"),
           Series("gen/distinct_1", "distinct-1"), Series("gen/distinct_2", "distinct-2"),
           Series("gen/distinct_3", "distinct-3"), Series("gen/self_bleu", "self-BLEU (high = repetitive)")),
          "score"),
    Trend("entropy", "Token entropy and top-k mass",
          (Series("gen/entropy_mean", "mean token entropy (nats)"),
           Series("gen/topk_mass", "top-k probability mass", True)),
          "nats", "mass"),
    Trend("length_bias", "Length bias of the learned margins",
          (Series("length/margin_spearman", "Spearman rho(margin, len diff)"),
           Series("gen/reward_length_spearman", "Spearman rho(reward, length) on samples")),
          "rho", baseline=0.0),
)
CURVES = (  # (id, title, train-log keys)
    ("loss", "Loss", ("loss",)),
    ("margins", "rewards/margins", ("rewards/margins",)),
    ("accuracies", "rewards/accuracies", ("rewards/accuracies",)),
    ("rewards", "rewards/chosen and rewards/rejected", ("rewards/chosen", "rewards/rejected")),
    ("logps", "logps/chosen and logps/rejected", ("logps/chosen", "logps/rejected")),
)


def plain(text) -> str:
    """Text Plotly shows as-is: its HTML subset disarmed, entities decoded back for display."""
    return html.escape(str(text), quote=False)


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def style(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    """House layout; the page sets the shared template once, so figures do not each carry one."""
    fig.update_layout(title=dict(text=plain(title), font=dict(size=14)), height=height,
                      margin=dict(l=55, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.22, font=dict(size=11)),
                      hovermode="x unified")
    return fig


def thresholds(report: ScanReport) -> dict[str, float]:
    """Metric -> the threshold a diagnosis cites for it (drawn as a dashed line on its trend)."""
    out: dict[str, float] = {}
    for d in report.diagnoses:
        for metric, ev in d.evidence.items():
            if finite(ev.threshold):
                out.setdefault(metric, float(ev.threshold))
    return out


# ---- training curves ---------------------------------------------------------------------------------------


def curve_plots(b: ReportBundle) -> list[Plot]:
    """Training curves from train_log.parquet (train solid, eval dashed), saved checkpoints as dotted lines."""
    log = b.train_log
    if log is None or log.height == 0:
        return []
    split = log["split"] if "split" in log.columns else pl.Series(["train"] * log.height)
    log = log.with_columns(split=split)
    plots = []
    for pid, title, keys in CURVES:
        fig = go.Figure()
        for i, key in enumerate(k for k in keys if k in log.columns):
            for name, dash in (("train", "solid"), ("eval", "dash")):
                rows = log.filter((pl.col("split") == name) & pl.col(key).is_not_null()).sort("step")
                if rows.height:
                    fig.add_scatter(x=rows["step"].to_list(), y=rows[key].to_list(), mode="lines+markers",
                                    name=plain(f"{key} ({name})" if len(keys) > 1 else name),
                                    line=dict(color=COLORS[i], dash=dash), marker=dict(size=3))
        if fig.data:
            checkpoint_markers(fig, b.doc)
            plots.append(Plot(f"curve-{pid}", title, style(fig, title, 280), tuple(keys)))
    return plots


def checkpoint_markers(fig: go.Figure, report: ScanReport) -> None:
    """A dotted vertical line at every scored checkpoint, so curves and probes line up by step."""
    for c in report.checkpoints:
        fig.add_vline(x=c.step, line=dict(color="#9e9e9e", dash="dot", width=1))
    fig.update_xaxes(title_text="step")


# ---- per-checkpoint trends ---------------------------------------------------------------------------------


def trend_plots(b: ReportBundle) -> list[Plot]:
    ckpts = b.doc.checkpoints
    if not ckpts:
        return []
    limits = thresholds(b.doc)
    ref = b.doc.reference.metrics if b.doc.reference else {}
    plots = []
    for trend in TRENDS:
        present = [s for s in trend.series if any(finite(c.metrics.get(s.key)) for c in ckpts)]
        if present:
            fig = trend_figure(trend, present, ckpts, limits, ref)
            plots.append(Plot(f"trend-{trend.id}", trend.title, fig, tuple(s.key for s in present)))
    return plots


def trend_figure(trend: Trend, present: list[Series], ckpts: list[CheckpointRecord], limits: dict, ref: dict) -> go.Figure:
    """Lines over steps; dashed = a diagnosis's threshold, dotted = the reference model's own value."""
    two_axes = any(s.right for s in present)
    fig = make_subplots(specs=[[{"secondary_y": True}]]) if two_axes else go.Figure()
    steps, names = [c.step for c in ckpts], [plain(c.name) for c in ckpts]
    for i, s in enumerate(present):
        ys = [c.metrics.get(s.key) if finite(c.metrics.get(s.key)) else None for c in ckpts]
        color = COLORS[i % len(COLORS)]
        if trend.band and trend.band[0] == s.key:
            add_band(fig, trend.band, ckpts, color, two_axes)
        kwargs = {"secondary_y": s.right} if two_axes else {}
        fig.add_trace(go.Scatter(x=steps, y=ys, name=plain(s.label), mode="lines+markers", customdata=names,
                                 line=dict(color=color, dash="dot" if s.right else "solid"),
                                 hovertemplate="%{customdata}: %{y:.4g}"), **kwargs)
        if s.key in limits:
            fig.add_hline(y=limits[s.key], line=dict(color=color, dash="dash", width=1.5), **kwargs,
                          annotation_text=plain(f"threshold {limits[s.key]:.3g}"), annotation_font_color=color,
                          annotation_position="top right" if s.right else "top left")
        if finite(ref.get(s.key)) and s.key.startswith("gen/") and "ratio" not in s.key and "kl" not in s.key:
            fig.add_hline(y=ref[s.key], line=dict(color=color, dash="dot", width=1), **kwargs)
    if trend.baseline is not None:
        fig.add_hline(y=trend.baseline, line=dict(color="#616161", width=1))
    style(fig, trend.title)
    fig.update_xaxes(title_text="step")
    if two_axes:
        fig.update_yaxes(title_text=plain(trend.y_title), secondary_y=False)
        fig.update_yaxes(title_text=plain(trend.y2_title), secondary_y=True, showgrid=False, tickmode="auto",
                         range=list(trend.y2_range) if trend.y2_range else None)
    else:
        fig.update_yaxes(title_text=plain(trend.y_title))
    return fig


def add_band(fig: go.Figure, band: tuple[str, str, str], ckpts: list[CheckpointRecord], color: str, two_axes: bool) -> None:
    """A shaded interval (e.g. KL's 95% CI, the margins' interquartile range) from the scan's own numbers."""
    _, lo_key, hi_key = band
    rows = [c for c in ckpts if finite(c.metrics.get(lo_key)) and finite(c.metrics.get(hi_key))]
    if len(rows) < 1:
        return
    xs = [c.step for c in rows]
    ys = [c.metrics[hi_key] for c in rows] + [c.metrics[lo_key] for c in rows][::-1]
    trace = go.Scatter(x=xs + xs[::-1], y=ys, fill="toself", mode="lines", line=dict(width=0), hoverinfo="skip",
                       fillcolor=_rgba(color, 0.15), name=plain(f"{lo_key} .. {hi_key}"), showlegend=False)
    fig.add_trace(trace, **({"secondary_y": False} if two_axes else {}))


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# ---- distributions -----------------------------------------------------------------------------------------


def spread(items: list, n: int) -> list:
    """At most n items, evenly spaced, first and last kept (for ridgelines of many checkpoints)."""
    if len(items) <= n:
        return items
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]


def histogram_plot(b: ReportBundle) -> list[Plot]:
    """Ridgeline of margin histograms, one ridge per checkpoint on shared bins (counts binned here, for display)."""
    kept = _kept_pairs(b)
    if kept is None:
        return []
    ckpts = spread(b.doc.checkpoints, MAX_RIDGES)
    m = kept.filter(pl.col("margin").is_finite())["margin"]
    if m.len() == 0:
        return []
    lo, hi = float(m.min()), float(m.max())
    width = (hi - lo) / N_BINS or 1.0
    centers = [lo + (i + 0.5) * width for i in range(N_BINS)]
    fig = go.Figure()
    for k, c in enumerate(ckpts):
        counts = _bin_counts(kept.filter(pl.col("checkpoint") == c.name)["margin"], lo, width)
        peak = max(counts) or 1
        ys = [k + 0.9 * n / peak for n in counts]
        color = COLORS[k % len(COLORS)]
        fig.add_scatter(x=centers, y=[k] * N_BINS, mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False)
        fig.add_scatter(x=centers, y=ys, mode="lines", fill="tonexty", line=dict(color=color, shape="hvh", width=1),
                        fillcolor=_rgba(color, 0.35), name=plain(c.name), customdata=counts,
                        hovertemplate=plain(c.name) + ": %{customdata} pairs near margin %{x:.3g}<extra></extra>")
    fig.add_vline(x=0, line=dict(color="#c62828", width=1, dash="dash"))
    style(fig, "Margin distribution per checkpoint (pairs left of the red line prefer the rejected answer)",
          max(320, 60 + 34 * len(ckpts)))
    fig.update_layout(showlegend=False, hovermode="closest")
    fig.update_xaxes(title_text="margin (beta x nats)")
    fig.update_yaxes(tickvals=list(range(len(ckpts))), ticktext=[plain(c.name) for c in ckpts], showgrid=True)
    return [Plot("dist-hist", "Margin distribution per checkpoint", fig, ("margins/q50", "margins/negative_frac"))]


def _bin_counts(values: pl.Series, lo: float, width: float) -> list[int]:
    idx = ((values.filter(values.is_finite()) - lo) / width).floor().clip(0, N_BINS - 1).cast(pl.Int64)
    counts = idx.value_counts()
    table = dict(zip(counts[idx.name].to_list(), counts["count"].to_list()))
    return [int(table.get(i, 0)) for i in range(N_BINS)]


def _kept_pairs(b: ReportBundle) -> pl.DataFrame | None:
    if b.pairs is None or b.pairs.height == 0 or not b.doc.checkpoints:
        return None
    return b.pairs.filter(~pl.col("excluded")) if "excluded" in b.pairs.columns else b.pairs


def scatter_plot(b: ReportBundle) -> list[Plot]:
    """Margin vs length difference at the last checkpoint: a seeded sample of points, a least-squares line through
    the points shown, and the scan's Spearman rho (computed on every pair) in the title."""
    kept = _kept_pairs(b)
    if kept is None:
        return []
    last = b.doc.checkpoints[-1]
    rows = kept.filter((pl.col("checkpoint") == last.name) & pl.col("margin").is_finite()).with_columns(
        diff=(pl.col("len_chosen") - pl.col("len_rejected")).cast(pl.Float64))
    if rows.height == 0:
        return []
    shown = rows.sample(n=MAX_SCATTER, seed=0) if rows.height > MAX_SCATTER else rows
    hover = _pair_hover(shown, b.pair_texts)
    fig = go.Figure()
    fig.add_scatter(x=shown["diff"].to_list(), y=shown["margin"].to_list(), mode="markers", name="pairs",
                    marker=dict(size=6, opacity=0.6, color=COLORS[0]), customdata=hover,
                    hovertemplate="%{customdata}<br>len diff %{x}, margin %{y:.3g}<extra></extra>")
    line = _least_squares(shown["diff"].to_list(), shown["margin"].to_list())
    if line:
        fig.add_scatter(x=line[0], y=line[1], mode="lines", name="least-squares trend (points shown)",
                        line=dict(color="#d62728", width=2), hoverinfo="skip")
    rho, p = last.metrics.get("length/margin_spearman"), last.metrics.get("length/margin_spearman_p")
    rho_txt = f"{rho:.3f}" + (f" (p={p:.2g})" if finite(p) else "") if finite(rho) else "not computed"
    note = f" · {len(shown)} of {rows.height} pairs shown" if len(shown) < rows.height else ""
    style(fig, "", 380)  # two-line title: escaped parts joined by our own <br>
    title = (plain(f"{last.name}: margin vs len(chosen) - len(rejected)") + "<br>"
             + plain(f"Spearman rho = {rho_txt} (scan, all pairs){note}"))
    fig.update_layout(hovermode="closest", title=dict(text=title), margin=dict(t=62))
    fig.update_xaxes(title_text="response length difference (tokens)", zeroline=True)
    fig.update_yaxes(title_text="margin (beta x nats)", zeroline=True)
    return [Plot("dist-scatter", "Margin vs length difference", fig, ("length/margin_spearman",))]


def _pair_hover(shown: pl.DataFrame, texts: pl.DataFrame | None) -> list[str]:
    """'pair 12: <prompt start>' per point, escaped for Plotly's hover label."""
    prompts = {}
    if texts is not None:
        prompts = dict(zip(texts["pair_id"].to_list(), texts["prompt"].to_list()))
    out = []
    for pid in shown["pair_id"].to_list():
        snippet = " ".join(str(prompts.get(pid, "")).split())[:60]
        out.append(plain(f"pair {pid}: {snippet}"))
    return out


def _least_squares(x: list[float], y: list[float]) -> tuple[list[float], list[float]] | None:
    """Endpoints of the ordinary least-squares line y = a + b x (a drawing aid; rho is the scan's statistic)."""
    if len(x) < 3 or max(x) == min(x):
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    slope = sum((a - mx) * (c - my) for a, c in zip(x, y)) / sum((a - mx) ** 2 for a in x)
    ends = [min(x), max(x)]
    return ends, [my + slope * (e - mx) for e in ends]


def all_plots(b: ReportBundle) -> dict[str, list[Plot]]:
    """Every figure of the report, by section."""
    return {"curves": curve_plots(b), "trends": trend_plots(b),
            "distributions": histogram_plot(b) + scatter_plot(b)}
