"""`dpo-doctor compare`: several DPO runs of one reference (a beta / learning-rate sweep) judged together.

runs.py finds the runs and checks they share a reference; pipeline.py scans each with one ScanConfig (the scan
pipeline itself, cached) and writes report.json of kind "compare"; quality.py rebuilds per-prompt quality from
each scan's samples; choose.py places every checkpoint on quality vs sqrt(KL), draws the frontier, picks the
checkpoint to ship (paired bootstrap over prompts) and the next beta / learning rate. Views render it
(views/compare_html.py, compare_markdown.py, tui/compare.py); nothing here renders.
"""
