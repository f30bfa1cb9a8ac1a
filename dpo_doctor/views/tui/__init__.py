"""Textual dashboard over a finished scan (`dpo-doctor tui`) or a live run (`dpo-doctor watch`).

Reads report.json and the Parquet tables only: no torch, no model, no recomputed metrics.
Entry points: `DoctorApp` (app.py), `open_report` / `find_reports` (data.py), `Watcher` (watch.py).
"""
