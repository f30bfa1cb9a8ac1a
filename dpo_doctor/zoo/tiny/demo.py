"""`dpo-doctor demo`: the whole story on a built-in example, in about a minute on 2 CPU cores.

1. builds (or reuses) a tiny SFT reference on the zoo's arithmetic task,
2. trains a short DPO run with the built-in trainer on preferences where the longer answer always wins
   (the zoo's `length_exploitation` scenario: a real failure, not a staged one),
3. scans every checkpoint against the reference, pairs and generation probes,
4. writes report.json / report.html / report.md and prints what was found.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from rich.console import Console

SCENARIO = "length_exploitation"


def run_demo(scan_fn: Callable, out: Path = Path("dpo-doctor-demo"), force: bool = False,
             console: Console | None = None) -> Path:
    """Build, train, then `scan_fn(cfg)` (the CLI hands in scan-then-render); returns the report dir."""
    from dpo_doctor.scan.config import ScanConfig
    from dpo_doctor.zoo.tiny.build import build

    console = console or Console()
    t0 = time.time()
    console.print(f"[bold]dpo-doctor demo[/]: a DPO run on preferences where [italic]the longer answer always "
                  f"wins[/], then a scan of its checkpoints. Working in {out}/")
    console.print("1/3 reference model (tiny Llama, SFT on an arithmetic task; cached after the first run)")
    console.print("2/3 DPO training with the built-in trainer (sigmoid loss, beta 0.1)")
    run = build(Path(out) / "runs", only=(SCENARIO,), force=force)[0]
    record = json.loads((run / "scenario.json").read_text())
    console.print(f"3/3 scanning {run} against {record['scan_ref']}")
    cfg = ScanConfig(run_dir=run, data=run / "eval.jsonl", ref=Path(record["scan_ref"]), out=Path(out) / "report",
                     cache_dir=Path(out) / "cache", max_prompts=16, samples_per_prompt=4, max_new_tokens=48)
    scan_fn(cfg)
    report_dir = Path(out) / "report"
    console.print(f"demo finished in {time.time() - t0:.0f} s. Open {report_dir / 'report.html'} in a browser, "
                  f"or run: dpo-doctor tui {report_dir}")
    return report_dir
