"""Loss-type awareness: each TRL loss_type's value at zero margin (what a run that never moved logs), the rules that
read it, and reference-free runs refused in one line through the console script."""

import math
import types

import pytest
import torch
import torch.nn.functional as F

from dpo_doctor.rules import run_rules
from dpo_doctor.rules.records import make_facts, zero_margin_loss
from tests.hostile.conftest import assert_user_error, run_cli


def _trl_zero_margin(loss_type: str, beta: float) -> float:
    """TRL 1.16 DPOTrainer's per-sequence loss (dpo_trainer.py) evaluated in float64 with every log-ratio 0."""
    z = torch.zeros((), dtype=torch.float64)
    b = torch.tensor(beta, dtype=torch.float64)
    formulas = {
        "sigmoid": lambda: -F.logsigmoid(b * z),
        "hinge": lambda: torch.relu(1 - b * z),
        "ipo": lambda: (z - 1 / (2 * b)) ** 2,
        "nca_pair": lambda: -F.logsigmoid(b * z) - 0.5 * F.logsigmoid(-b * z) - 0.5 * F.logsigmoid(-b * z),
        "robust": lambda: (-(1 - 0.1) * F.logsigmoid(b * z) + 0.1 * F.logsigmoid(-b * z)) / (1 - 2 * 0.1),
        "bco_pair": lambda: -F.logsigmoid(b * z) - F.logsigmoid(-b * z),
        "sppo_hard": lambda: (z - 0.5 / b) ** 2 + (z + 0.5 / b) ** 2,
        "aot": lambda: -F.logsigmoid(b * z) * (1 - 0.1) - F.logsigmoid(-b * z) * 0.1,
        "apo_zero": lambda: (1 - torch.sigmoid(b * z)) + torch.sigmoid(b * z),
        "apo_down": lambda: torch.sigmoid(b * z) + (1 - torch.sigmoid(b * (z - z))),
        "discopop": lambda: -F.logsigmoid(b * z) * (1 - torch.sigmoid(b * z / 0.05)) + torch.exp(-b * z) * torch.sigmoid(b * z / 0.05),
    }
    return float(formulas[loss_type]())


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                                       "apo_zero", "apo_down", "discopop"])
@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5])
def test_zero_margin_loss_matches_trl(loss_type, beta):
    assert zero_margin_loss(loss_type, beta) == pytest.approx(_trl_zero_margin(loss_type, beta), rel=1e-12)


def test_zero_margin_loss_combinations_and_unknowns():
    assert zero_margin_loss("sigmoid+bco_pair", 0.1) == pytest.approx(3 * math.log(2))
    assert zero_margin_loss("sigmoid+sft", 0.1) is None  # an NLL has no zero-margin value
    assert zero_margin_loss("exo_pair", 0.1) is None and zero_margin_loss("simpo", 2.0) is None
    assert zero_margin_loss(None, 0.1) == pytest.approx(math.log(2))  # unknown: TRL's default, sigmoid


def _still_log(loss: float, n: int = 8):
    return [{"step": 10 * (i + 1), "loss": loss, "rewards/margins": 0.0} for i in range(n)]


def test_dpo201_follows_the_loss_type():
    """An IPO run at beta 0.1 that never moved logs 1/(4 x 0.01) = 25, not ln 2: DPO201 fires on 25 and names it."""
    ipo = run_rules(make_facts(log=_still_log(25.0), log_only=True, beta=0.1, loss_type="ipo"), select={"DPO201"})
    assert [d.code for d in ipo] == ["DPO201"] and "25, the ipo loss at zero margin" in ipo[0].message
    assert not run_rules(make_facts(log=_still_log(math.log(2)), log_only=True, beta=0.1, loss_type="ipo"),
                         select={"DPO201"})
    hinge = run_rules(make_facts(log=_still_log(1.0), log_only=True, loss_type="hinge"), select={"DPO201"})
    assert [d.code for d in hinge] == ["DPO201"]
    sft = run_rules(make_facts(log=_still_log(3.2), log_only=True, loss_type="sigmoid+sft"), select={"DPO201"})
    assert [d.code for d in sft] == ["DPO201"] and "margins were 0" in sft[0].message


def test_dpo002_names_the_loss_value():
    zero = {"drift/chosen": 0.0, "drift/rejected": 0.0, "rewards/margins": 0.0, "rewards/accuracies": 0.0}
    found = run_rules(make_facts(zero, beta=0.5, loss_type="ipo"), select={"DPO002"})
    assert "loss sat at 1 (ipo at zero margin)" in found[0].message
    assert "ln 2" in run_rules(make_facts(zero), select={"DPO002"})[0].message


@pytest.mark.parametrize("config, named", [
    ("CPOConfig:simpo", "SimPO"), ("ORPOConfig:sigmoid", "ORPO"), ("DPOConfig:reference_free", "reference_free=True"),
])
def test_reference_free_run_is_refused(tmp_path, tiny_dir, pairs_jsonl, config, named):
    import shutil

    cls, loss = config.split(":")
    run = tmp_path / "run"
    shutil.copytree(tiny_dir, run / "checkpoint-2")
    fields = {"beta": 2.0, "loss_type": loss}
    if loss == "reference_free":
        fields = {"beta": 0.1, "loss_type": ["sigmoid"], "reference_free": True}
    cls_obj = type(cls, (types.SimpleNamespace,), {})
    cls_obj.__module__ = "trl_stand_in"
    import sys

    sys.modules["trl_stand_in"] = types.SimpleNamespace(**{cls: cls_obj})
    try:
        torch.save(cls_obj(**fields), run / "checkpoint-2" / "training_args.bin")
    finally:
        del sys.modules["trl_stand_in"]
    proc = run_cli("scan", run, "--ref", tiny_dir, "--data", pairs_jsonl, "--no-generate", "--out", tmp_path / "o")
    assert_user_error(proc, named, "no reference", "without --data", "training_args.bin")
