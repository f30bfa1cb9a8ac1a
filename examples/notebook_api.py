"""The Python API, notebook style: scan a run, load its report, build a figure, read the verdict.

    python examples/notebook_api.py [OUT_DIR]        # about 20 s on a laptop CPU, offline

Each "cell" below works as is in Jupyter (there, `fig` alone in a cell shows the interactive figure). The first
cell only makes a tiny TRL run to look at; point `run_dir`, `ref` and `data` at your own run instead.
"""

# %% a tiny run to look at (TRL's DPOTrainer, 6 CPU steps, a checkpoint every 2)
from _tiny import build_reference, dpo_trainer, make_pairs, out_dir, write_jsonl

out = out_dir("notebook_api")
ref = build_reference(out / "sft")
data = write_jsonl(out / "test_prefs.jsonl", make_pairs(16, seed=7))
dpo_trainer(ref, out / "run", make_pairs(24, seed=5)).train()

# %% scan it: the same pipeline as `dpo-doctor scan`, one ScanConfig field per flag
from dpo_doctor import ScanConfig, all_plots, load_report, scan

config = ScanConfig(run_dir=out / "run", ref=ref, data=data, beta=0.1, max_length=64, out=out / "report",
                    cache_dir=out / "cache", generate=False)
report_dir = scan(config)

# %% the report: report.json (validated) as typed records (bundle.doc), its tables as polars frames
import polars as pl

bundle = load_report(report_dir)
print("verdict:", bundle.doc.verdict, "-", bundle.doc.summary, "| beta", bundle.doc.run.beta)
for d in bundle.diagnoses:
    print(f"  {d.code} {d.name} ({d.severity}): {d.message}")
print(bundle.pairs.group_by("checkpoint", maintain_order=True).agg(pl.col("margin").mean(), pl.col("margin").gt(0).mean().alias("accuracy")))

# %% a figure: every Plot has .id, .title and .fig (a plotly Figure; in Jupyter, `fig` shows it)
plots = {p.id: p for section in all_plots(bundle).values() for p in section}
print("figures:", sorted(plots))
fig = plots["trend-margins"].fig  # margins and accuracies across checkpoints
fig.write_html(out / "margins.html", include_plotlyjs="cdn")
print("figure written to", out / "margins.html")
