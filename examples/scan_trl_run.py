"""Scan a TRL run: train a tiny DPO run with TRL's DPOTrainer, then diagnose it with `dpo-doctor scan`.

    python examples/scan_trl_run.py [OUT_DIR]        # about 20 s on a laptop CPU, offline

Writes OUT_DIR/sft (the reference), OUT_DIR/run (TRL's output: checkpoint-2/4/6, trainer_state.json) and
OUT_DIR/report (report.json, report.html, report.md). On your own run only the last step applies:

    dpo-doctor scan runs/exp1 --ref models/sft --data test_prefs.jsonl
"""

import json
import subprocess
import sys

from _tiny import build_reference, dpo_trainer, make_pairs, out_dir, write_jsonl

out = out_dir("scan_trl_run")
ref = build_reference(out / "sft")
test_prefs = write_jsonl(out / "test_prefs.jsonl", make_pairs(16, seed=7))  # held-out pairs the run never saw
dpo_trainer(ref, out / "run", make_pairs(24, seed=5)).train()

# The CLI, as a user runs it (python -m dpo_doctor is the `dpo-doctor` command of this interpreter).
# --beta: the run's beta (TRL keeps it only in the pickled training_args.bin); --no-generate: pairs only, faster.
command = [sys.executable, "-m", "dpo_doctor", "scan", str(out / "run"), "--ref", str(ref), "--data", str(test_prefs),
           "--beta", "0.1", "--max-length", "64", "--out", str(out / "report"), "--cache-dir", str(out / "cache"),
           "--no-generate"]
print("$", " ".join(command[2:]).replace("-m dpo_doctor", "dpo-doctor"), flush=True)
code = subprocess.run(command).returncode
if code != 0:
    sys.exit(f"dpo-doctor scan exited {code}")
report = json.loads((out / "report" / "report.json").read_text())
print(f"checkpoints scanned: {[c['name'] for c in report['checkpoints']]}")
print(f"verdict: {report['verdict']}; report: {out / 'report' / 'report.html'}")
