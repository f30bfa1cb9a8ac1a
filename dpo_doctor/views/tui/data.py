"""What the dashboard reads: report.json (json) and the Parquet tables (polars), nothing else.

The TUI never runs a model or recomputes a metric; the only derived columns are per-row differences of stored
values (a pair's summed log-ratio, its length difference) that the pairs table sorts by.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dpo_doctor.errors import UserError
from dpo_doctor.report import ReportBundle, load_report, read_report
from dpo_doctor.report_model import CheckpointRecord, DataAuditReport, DiagnosisRecord, ScanReport
from dpo_doctor.severity import SEVERITY_RANK



@dataclass(frozen=True)
class TuiReport:
    """One scan as the dashboard browses it: the validated `ReportBundle` plus the dashboard's row helpers."""

    bundle: ReportBundle

    @property
    def dir(self) -> Path:
        return self.bundle.path

    @property
    def doc(self) -> ScanReport | DataAuditReport:
        return self.bundle.doc

    @property
    def pairs(self) -> pl.DataFrame | None:
        return self.bundle.pairs

    @property
    def pair_texts(self) -> pl.DataFrame | None:
        return self.bundle.pair_texts

    @property
    def samples(self) -> pl.DataFrame | None:
        return self.bundle.samples

    @property
    def train_log(self) -> pl.DataFrame | None:
        return self.bundle.train_log

    @property
    def checkpoints(self) -> list[CheckpointRecord]:
        return self.doc.checkpoints

    @property
    def checkpoint_names(self) -> list[str]:
        return [c.name for c in self.checkpoints]

    @property
    def diagnoses(self) -> list[DiagnosisRecord]:
        """Diagnoses, worst first (stable within a severity)."""
        return sorted(self.doc.diagnoses, key=lambda d: -SEVERITY_RANK.get(d.severity, 0))

    @property
    def html_path(self) -> Path | None:
        path = self.dir / "report.html"
        return path if path.is_file() else None

    def diagnoses_for(self, checkpoint: str) -> list[DiagnosisRecord]:
        return [d for d in self.diagnoses if d.checkpoint == checkpoint]

    def default_checkpoint(self) -> str | None:
        """The best checkpoint when the scan named one, else the last."""
        best = self.doc.best_checkpoint
        if best is not None and best.name in self.checkpoint_names:
            return best.name
        return self.checkpoint_names[-1] if self.checkpoints else None

    def pair_rows(self, checkpoint: str) -> pl.DataFrame:
        """The pairs of one checkpoint with their texts and the sortable differences."""
        if self.pairs is None or self.pairs.is_empty():
            return pl.DataFrame()
        rows = self.pairs.filter(pl.col("checkpoint") == checkpoint).with_columns(
            drift_chosen=pl.col("logp_chosen") - pl.col("ref_logp_chosen"),
            drift_rejected=pl.col("logp_rejected") - pl.col("ref_logp_rejected"),
            len_diff=pl.col("len_chosen") - pl.col("len_rejected"))
        if self.pair_texts is not None:
            rows = rows.join(self.pair_texts.select("pair_id", "prompt", "chosen", "rejected"), on="pair_id", how="left")
        else:
            rows = rows.with_columns(prompt=pl.lit(""), chosen=pl.lit(""), rejected=pl.lit(""))
        return rows.sort("pair_id")

    def sample_prompts(self) -> list[tuple[int, str]]:
        if self.samples is None:
            return []
        first = self.samples.group_by("prompt_id").agg(pl.col("prompt").first()).sort("prompt_id")
        return list(zip(first["prompt_id"].to_list(), first["prompt"].to_list()))

    def samples_for(self, checkpoint: str, prompt_id: int) -> pl.DataFrame:
        if self.samples is None:
            return pl.DataFrame()
        return self.samples.filter((pl.col("checkpoint") == checkpoint) & (pl.col("prompt_id") == prompt_id)).sort("sample_idx")


def open_report(report_dir: Path) -> TuiReport:
    """A report dir written by `dpo-doctor scan`, read and validated by the one report loader."""
    bundle = load_report(report_dir)
    if bundle.kind == "compare":
        raise UserError(f"{report_dir} is a compare report; open it on its own: dpo-doctor tui {report_dir}")
    return TuiReport(bundle)


def find_reports(root: Path) -> list[Path]:
    """Report dirs at `root` itself or one or two levels below it (reports/<run>/, zoo/reports/<run>/)."""
    root = Path(root)
    if (root / "report.json").is_file():
        return [root]
    found = sorted(p.parent for pattern in ("*/report.json", "*/*/report.json") for p in root.glob(pattern))
    return found


def report_summary(report_dir: Path) -> dict:
    """The picker's row for one report dir; unreadable files show as such instead of failing the list."""
    try:
        doc, _ = read_report(report_dir / "report.json")
        if doc.kind == "compare":
            return {"name": doc.name, "verdict": "compare", "checkpoints": sum(len(r.checkpoints) for r in doc.runs),
                    "diagnoses": sum(len(r.diagnoses) for r in doc.runs), "created": doc.created[:16]}
        return {"name": doc.run.name if doc.kind == "scan" else report_dir.name, "verdict": doc.verdict,
                "checkpoints": len(doc.checkpoints), "diagnoses": len(doc.diagnoses), "created": doc.created[:16]}
    except UserError:
        return {"name": report_dir.name, "verdict": "unreadable", "checkpoints": 0, "diagnoses": 0, "created": ""}
