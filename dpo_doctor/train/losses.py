"""DPO loss variants: one pure function each, registered in `LOSSES`.

Every function takes one `LossInputs` (summed response log-probs of policy and reference, token counts, beta and
the variant parameters) and returns the per-pair loss (B,); the trainer takes the mean. Notation: rho_w, rho_l are
the chosen / rejected log-ratios log pi(y)/pi_ref(y); Delta = rho_w - rho_l.

Where TRL has the loss (sigmoid, hinge, ipo, robust, sigmoid_norm, and the f-divergence scores) the code follows
`trl/trainer/dpo_trainer.py::_compute_loss` of TRL 1.x line for line, so a built-in run and a TRL run of the same
data agree; the f-divergence scores replace rho in every loss TRL allows them in (see `F_DIVERGENCE_LOSSES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from dpo_doctor.train.config import LossParams

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
# Losses whose log-ratios are replaced by f-divergence scores (TRL allows f-divergences with these only).
F_DIVERGENCE_LOSSES = frozenset({"sigmoid", "hinge", "ipo", "robust", "sigmoid_norm", "cdpo", "rpo", "f_dpo"})


@dataclass(frozen=True, kw_only=True)
class LossInputs(LossParams):
    """What a loss sees for a batch of B pairs: the log-probs (summed over response tokens, TRL's convention) and
    the hyperparameters, whose defaults live in `LossParams` (dpo_doctor/train/config.py)."""

    policy_chosen: torch.Tensor  # (B,)
    policy_rejected: torch.Tensor  # (B,)
    ref_chosen: torch.Tensor  # (B,)
    ref_rejected: torch.Tensor  # (B,)
    n_chosen: torch.Tensor  # (B,) response token counts
    n_rejected: torch.Tensor  # (B,)


def log_ratios(x: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """rho_w, rho_l = log pi(y)/pi_ref(y) for chosen and rejected, (B,) each."""
    return x.policy_chosen - x.ref_chosen, x.policy_rejected - x.ref_rejected


def _f_score(rho: torch.Tensor, divergence: str, alpha: float) -> torch.Tensor:
    """f'(u) at u = pi/pi_ref = exp(rho), for the f-divergence (Wang et al. 2024, "Beyond Reverse KL", Thm 1)."""
    if divergence == "reverse_kl" or (divergence == "alpha_divergence" and abs(alpha - 1.0) < 1e-6):
        return rho  # f'(u) = log u (+1): standard DPO
    if divergence == "forward_kl":
        return 1 - torch.exp(-rho)  # f'(u) = 1 - 1/u
    if divergence == "js_divergence":
        return math.log(2) + F.logsigmoid(rho)  # f'(u) = log(2u/(1+u))
    if divergence == "alpha_divergence":
        t = (alpha - 1.0) * rho
        t = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t  # half: exp in float32 (TRL)
        t = torch.clamp(t, max=11.0 if rho.dtype == torch.float16 else 80.0)  # TRL's clamp keeps exp() finite
        return ((torch.exp(t) - 1.0) * (1.0 / (alpha - 1.0))).to(rho.dtype)  # f'(u) = (u^(a-1) - 1)/(a-1)
    raise ValueError(f"unknown f_divergence {divergence!r}; choose one of {', '.join(F_DIVERGENCES)}")


def scores(x: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected scores: the log-ratios, or their f-divergence transform (TRL's `chosen_scores`)."""
    rho_w, rho_l = log_ratios(x)
    return _f_score(rho_w, x.f_divergence, x.f_alpha), _f_score(rho_l, x.f_divergence, x.f_alpha)


def _delta(x: LossInputs) -> torch.Tensor:
    s_w, s_l = scores(x)
    return s_w - s_l  # (B,)


def _per_token_delta(x: LossInputs) -> torch.Tensor:
    s_w, s_l = scores(x)
    return s_w / x.n_chosen.clamp(min=1.0) - s_l / x.n_rejected.clamp(min=1.0)  # (B,)


def sigmoid(x: LossInputs) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, Eq. 7): -log sigma(beta * Delta)."""
    return -F.logsigmoid(x.beta * _delta(x))


def hinge(x: LossInputs) -> torch.Tensor:
    """SLiC-HF / RSO hinge (Zhao et al. 2023; Liu et al. 2024, RSO): relu(1 - beta * Delta)."""
    return torch.relu(1 - x.beta * _delta(x))


def ipo(x: LossInputs) -> torch.Tensor:
    """IPO (Azar et al. 2024, Eq. 17): (h - 1/(2 tau))^2 with tau = beta and h the per-token Delta (as TRL)."""
    return (_per_token_delta(x) - 1 / (2 * x.beta)) ** 2


def cdpo(x: LossInputs) -> torch.Tensor:
    """Conservative DPO (Mitchell 2023, cDPO note; TRL <= 0.28 `sigmoid` with label_smoothing):
    -(1 - eps) log sigma(beta Delta) - eps log sigma(-beta Delta)."""
    z = x.beta * _delta(x)
    return -(1 - x.label_smoothing) * F.logsigmoid(z) - x.label_smoothing * F.logsigmoid(-z)


def robust(x: LossInputs) -> torch.Tensor:
    """Robust DPO (Ray Chowdhury et al. 2024, the rDPO loss; TRL `robust`):
    [(1 - eps) L(y_w, y_l) - eps L(y_l, y_w)] / (1 - 2 eps), L = -log sigma(beta Delta)."""
    z = x.beta * _delta(x)
    eps = x.label_smoothing
    return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


def dpop(x: LossInputs) -> torch.Tensor:
    """DPO-Positive (Pal et al. 2024, Smaug, the DPOP loss):
    -log sigma(beta * (Delta - lambda * max(0, log pi_ref(y_w) - log pi(y_w))))."""
    rho_w, rho_l = log_ratios(x)
    penalty = torch.clamp(x.ref_chosen - x.policy_chosen, min=0.0)  # (B,) > 0 only when chosen fell below ref
    return -F.logsigmoid(x.beta * (rho_w - rho_l - x.dpop_lambda * penalty))


def rpo(x: LossInputs) -> torch.Tensor:
    """RPO (Pang et al. 2024, Iterative RPO, the DPO+NLL loss): DPO + alpha * NLL(y_w) / |y_w| (per-token NLL)."""
    nll = -x.policy_chosen / x.n_chosen.clamp(min=1.0)  # (B,)
    return sigmoid(x) + x.rpo_alpha * nll


def simpo(x: LossInputs) -> torch.Tensor:
    """SimPO (Meng et al. 2024, Eq. 6), reference-free: -log sigma(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l)
    - gamma)."""
    avg_w = x.policy_chosen / x.n_chosen.clamp(min=1.0)
    avg_l = x.policy_rejected / x.n_rejected.clamp(min=1.0)
    return -F.logsigmoid(x.beta * avg_w - x.beta * avg_l - x.simpo_gamma)


def sigmoid_norm(x: LossInputs) -> torch.Tensor:
    """Length-normalized DPO (LN-DPO, Ahrabian et al. 2024; TRL `sigmoid_norm`, Tulu 3):
    -log sigma(beta * (rho_w/|y_w| - rho_l/|y_l|))."""
    return -F.logsigmoid(x.beta * _per_token_delta(x))


def r_dpo(x: LossInputs) -> torch.Tensor:
    """Length-regularized DPO (Park et al. 2024, R-DPO): -log sigma(beta Delta + alpha (|y_w| - |y_l|)).

    Sign: the policy optimizes r - alpha |y|, so the true reward gap is beta Delta + alpha (|y_w| - |y_l|); a longer
    chosen then needs a *smaller* Delta, which is what keeps length from being learned as preference."""
    rho_w, rho_l = log_ratios(x)
    return -F.logsigmoid(x.beta * (rho_w - rho_l) + x.r_dpo_alpha * (x.n_chosen - x.n_rejected))


def f_dpo(x: LossInputs) -> torch.Tensor:
    """f-DPO (Wang et al. 2024, "Beyond Reverse KL", Thm 1 loss): -log sigma(beta f'(u_w) - beta f'(u_l)), u = pi/pi_ref, with
    f = `f_divergence` (TRL's `f_divergence_type`). With reverse_kl this is exactly `sigmoid`."""
    return sigmoid(x)


LOSSES: dict[str, Callable[[LossInputs], torch.Tensor]] = {
    "sigmoid": sigmoid,
    "ipo": ipo,
    "hinge": hinge,
    "cdpo": cdpo,
    "robust": robust,
    "dpop": dpop,
    "rpo": rpo,
    "simpo": simpo,
    "sigmoid_norm": sigmoid_norm,
    "r_dpo": r_dpo,
    "f_dpo": f_dpo,
}
