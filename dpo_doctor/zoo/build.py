"""`dpo-doctor zoo build`: build one zoo (`tiny`: dpo_doctor.zoo.tiny.build; `smollm2`: dpo_doctor.zoo.smollm2.zoo).

Each zoo writes run folders (dpo_doctor.zoo.runfolder); this module only picks the zoo. Thread counts are the
caller's business (the CLI pins one torch thread on this 2-core machine; a library does not).
"""

from __future__ import annotations

from pathlib import Path

from dpo_doctor.errors import UserError, did_you_mean

MODELS = ("tiny", "smollm2")
DEFAULT_OUT = {"tiny": Path("examples/zoo/runs"), "smollm2": Path("examples/zoo/runs-smollm2")}


def build(out: Path | None = None, only: tuple[str, ...] = (), force: bool = False, progress: bool = True,
          model: str = "tiny") -> list[Path]:
    """Build the references (cached) and the selected scenarios of the `model` zoo; returns the run dirs.

    model: "tiny" (the synthetic-task zoo, default out examples/zoo/runs) or "smollm2" (SmolLM2-135M-Instruct, LoRA
    on its own answers, default out examples/zoo/runs-smollm2)."""
    if model not in MODELS:
        raise UserError(f"unknown zoo model {model!r}{did_you_mean(model, MODELS)} Choose one of: {', '.join(MODELS)}")
    out = Path(out) if out is not None else DEFAULT_OUT[model]
    if model == "smollm2":
        from dpo_doctor.zoo.smollm2 import zoo

        return zoo.build(out, only, force, progress)
    from dpo_doctor.zoo.tiny import build as tiny_build

    return tiny_build.build(out, only, force, progress)
