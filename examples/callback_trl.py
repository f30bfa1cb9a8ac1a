"""DoctorCallback in a TRL training script: diagnoses while DPOTrainer trains, with no separate scan step.

    python examples/callback_trl.py [OUT_DIR]        # about 20 s on a laptop CPU, offline

At every logged step the log rules run; at every save the new checkpoint is scored on the held-out pairs against
the reference (same code and cache as `dpo-doctor scan`) and report.json/html/md land in OUT_DIR/run/dpo-doctor/.
In your own script the callback is one line: `callbacks=[DoctorCallback(stop_on="error")]` (it then scores the
trainer's eval set, and takes the reference from the model's source folder).
"""

import json

from _tiny import build_reference, dpo_trainer, make_pairs, out_dir, write_jsonl

from dpo_doctor import DoctorCallback

out = out_dir("callback_trl")
ref = build_reference(out / "sft")
test_prefs = write_jsonl(out / "test_prefs.jsonl", make_pairs(16, seed=7))

doctor = DoctorCallback(data=test_prefs, ref=ref, stop_on="error", cache_dir=out / "cache")
trainer = dpo_trainer(ref, out / "run", make_pairs(24, seed=5), callbacks=[doctor])
trainer.train()

report = json.loads((out / "run" / "dpo-doctor" / "report.json").read_text())
print(f"trained {trainer.state.global_step} steps; the callback scanned {[c['name'] for c in report['checkpoints']]}")
print(f"verdict: {report['verdict']}; findings: {[d['code'] for d in report['diagnoses']]}")
print(f"report: {out / 'run' / 'dpo-doctor' / 'report.html'}")
