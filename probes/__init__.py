"""Probe suites as data: one folder per suite (manifest.json + prompts). Installed as dpo_doctor.probes."""
