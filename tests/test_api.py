"""The Python API: what `dpo_doctor` exports, that importing it stays light, and the README's API example run
for real on a tiny run (the code block under "## Python API", executed as written in a fresh interpreter)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_pairs

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_import_is_light_and_every_export_resolves():
    code = ("import sys, dpo_doctor\n"
            "heavy = [m for m in ('torch', 'transformers', 'polars', 'plotly') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from dpo_doctor import ScanConfig, load_report, all_plots, trend_plots, scan\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
            "for name in dpo_doctor.__all__: getattr(dpo_doctor, name)\n"
            "print(sorted(dpo_doctor.__all__))")
    done = python(code)
    assert done.returncode == 0, done.stderr
    exported = set(eval(done.stdout))
    assert {"scan", "ScanConfig", "load_report", "all_plots", "trend_plots", "curve_plots", "histogram_plot",
            "scatter_plot", "Plot", "render_all", "DoctorCallback", "UserError", "__version__"} <= exported


def test_scan_is_the_pipeline_whichever_module_came_first():
    """`dpo_doctor.scan` is also a sub-package: importing it first must not turn the API's scan into a module
    that cannot be called (nor the other way round: dpo_doctor.scan.pipeline stays reachable)."""
    import dpo_doctor
    import dpo_doctor.scan.config  # noqa: F401 (the sub-package imported before the name is used)
    from dpo_doctor import scan
    from dpo_doctor.scan.pipeline import scan as pipeline_scan

    assert callable(dpo_doctor.scan) and scan is dpo_doctor.scan and dpo_doctor.scan.pipeline.scan is pipeline_scan
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dpo_doctor.nope  # noqa: B018


def readme_api_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def tiny_run(root: Path, tiny_dir: Path) -> None:
    """models/sft (the tiny model), runs/exp1/checkpoint-{1,2} (its weights nudged), prefs.jsonl: the README's names."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    shutil.copytree(tiny_dir, root / "models" / "sft")
    tok = PreTrainedTokenizerFast.from_pretrained(tiny_dir)
    for step in (1, 2):
        model = AutoModelForCausalLM.from_pretrained(tiny_dir)
        torch.manual_seed(step)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * step * torch.randn_like(p))
        model.save_pretrained(root / "runs" / "exp1" / f"checkpoint-{step}")
        tok.save_pretrained(root / "runs" / "exp1" / f"checkpoint-{step}")
    (root / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_pairs(12)))


def test_readme_api_example_runs_as_written(tmp_path, tiny_dir):
    tiny_run(tmp_path, tiny_dir)
    code = readme_api_block()
    done = python(code + "\nprint('FIG', type(fig).__name__, len(fig.data))\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "reports" / "exp1" / "report.json").read_text())
    assert [c["name"] for c in report["checkpoints"]] == ["checkpoint-1", "checkpoint-2"]
    first = done.stdout.splitlines()[0]
    assert first.startswith(report["verdict"] + " ") and str([d["code"] for d in report["diagnoses"]]) in first
    assert "checkpoint-1" in done.stdout and "pair_id" in done.stdout  # the pairs table head was printed
    fig_line = [line for line in done.stdout.splitlines() if line.startswith("FIG")][0]
    assert fig_line.split()[1] == "Figure" and int(fig_line.split()[2]) > 0
