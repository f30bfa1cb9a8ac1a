"""`dpo-doctor data PAIRS`: audit a preference data set before training (no run needed).

table (pairs read by the one reader `data.pairs`, as `scan` reads them) -> metrics (`metrics.data_audit`, no model;
the same function gives `scan` its data section) -> with --ref, the engine (one forward pass per answer: the
reference's log-probs and the summed hidden states CHES needs) -> rules (DPO3xx) -> report.json (kind data_audit)
+ Parquet tables + filter_ids.jsonl. The views render it like a scan.
"""
