"""Each loss variant against values worked out by hand (float64).

Shared batch of two pairs, beta = 0.5:
    policy chosen  pc = [-10, -20]    policy rejected pr = [-12, -18]
    ref chosen     rc = [-11, -19]    ref rejected    rr = [-11, -19]
    tokens         nc = [4, 5]        nr = [2, 10]
so rho_w = pc - rc = [1, -1], rho_l = pr - rr = [-1, 1], Delta = [2, -2], beta*Delta = z = [1, -1].
L(z) = -log sigma(z) = log(1 + e^-z): L(1) = 0.3132616875, L(-1) = 1.3132616875, and L(-z) = L(z) + z.
"""

import math

import pytest
import torch

from dpo_doctor.train.losses import LOSSES, LossInputs


def L(z: float) -> float:
    """-log sigma(z), written out."""
    return math.log1p(math.exp(-z))


def inputs(**params) -> LossInputs:
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return LossInputs(policy_chosen=t(-10, -20), policy_rejected=t(-12, -18), ref_chosen=t(-11, -19),
                      ref_rejected=t(-11, -19), n_chosen=t(4, 5), n_rejected=t(2, 10), beta=0.5, **params)


def check(name: str, expected: list[float], **params) -> None:
    got = LOSSES[name](inputs(**params))
    assert got.dtype == torch.float64 and got.shape == (2,)
    assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_registry_is_complete():
    assert set(LOSSES) == {"sigmoid", "ipo", "hinge", "cdpo", "robust", "dpop", "rpo", "simpo", "sigmoid_norm",
                           "r_dpo", "f_dpo"}


def test_sigmoid():
    """z = [1, -1] -> [L(1), L(-1)] = [0.31326, 1.31326]."""
    check("sigmoid", [0.31326168751822286, 1.3132616875182228])


def test_hinge():
    """relu(1 - z) = [relu(0), relu(2)] = [0, 2]."""
    check("hinge", [0.0, 2.0])


def test_ipo_is_per_token():
    """h = rho_w/nc - rho_l/nr = [1/4 + 1/2, -1/5 - 1/10] = [0.75, -0.3]; target 1/(2 beta) = 1;
    (h - 1)^2 = [0.0625, 1.69]."""
    check("ipo", [0.0625, 1.69])


def test_cdpo():
    """eps = 0.1: -(1-eps) log s(z) - eps log s(-z) = L(z) + eps*z (since L(-z) = L(z) + z)
    = [0.31326 + 0.1, 1.31326 - 0.1]."""
    check("cdpo", [0.41326168751822286, 1.2132616875182228], label_smoothing=0.1)


def test_cdpo_without_smoothing_is_dpo():
    assert torch.equal(LOSSES["cdpo"](inputs()), LOSSES["sigmoid"](inputs()))


def test_robust():
    """eps = 0.1: [(1-eps) L(z) - eps L(-z)]/(1-2eps) = [0.9 L - 0.1 (L + z)]/0.8 = L(z) - z/8
    = [0.31326 - 0.125, 1.31326 + 0.125]."""
    check("robust", [0.18826168751822286, 1.4382616875182228], label_smoothing=0.1)


def test_dpop():
    """lambda = 2: penalty = max(0, rc - pc) = [max(0, -1), max(0, 1)] = [0, 1];
    beta*(Delta - lambda*penalty) = 0.5*[2, -2 - 2] = [1, -2] -> [L(1), L(-2)] = [0.31326, 2.12693]."""
    check("dpop", [L(1), L(-2)], dpop_lambda=2.0)
    assert L(-2) == pytest.approx(2.1269280110429727)


def test_rpo():
    """alpha = 0.5: L(z) + alpha * (-pc/nc) = [L(1) + 0.5*2.5, L(-1) + 0.5*4] = [1.56326, 3.31326]."""
    check("rpo", [1.5632616875182229, 3.313261687518223], rpo_alpha=0.5)


def test_simpo_is_reference_free():
    """gamma = 0.25: avg_w = pc/nc = [-2.5, -4], avg_l = pr/nr = [-6, -1.8];
    beta*(avg_w - avg_l) - gamma = [0.5*3.5 - 0.25, 0.5*(-2.2) - 0.25] = [1.5, -1.35]."""
    check("simpo", [L(1.5), L(-1.35)], simpo_gamma=0.25)
    x = inputs(simpo_gamma=0.25)
    moved = LossInputs(**{**x.__dict__, "ref_chosen": x.ref_chosen + 7.0})
    assert torch.equal(LOSSES["simpo"](moved), LOSSES["simpo"](x))


def test_sigmoid_norm():
    """beta * (rho_w/nc - rho_l/nr) = 0.5 * [0.75, -0.3] = [0.375, -0.15]."""
    check("sigmoid_norm", [L(0.375), L(-0.15)])


def test_r_dpo():
    """alpha = 0.1: beta*Delta + alpha*(nc - nr) = [1 + 0.1*2, -1 + 0.1*(-5)] = [1.2, -1.5]
    (a longer chosen needs a smaller Delta: length stops paying)."""
    check("r_dpo", [L(1.2), L(-1.5)], r_dpo_alpha=0.1)


def test_f_dpo_forward_kl():
    """score = 1 - e^-rho: Delta = (1 - e^-1) - (1 - e^1) = e - 1/e = 2 sinh(1) (negated for pair 2);
    beta*Delta = +-sinh(1)."""
    check("f_dpo", [L(math.sinh(1)), L(-math.sinh(1))], f_divergence="forward_kl")


def test_f_dpo_js():
    """score = log 2 + log s(rho): Delta = log s(1) - log s(-1) = 1; beta*Delta = +-0.5."""
    check("f_dpo", [L(0.5), L(-0.5)], f_divergence="js_divergence")


def test_f_dpo_alpha():
    """alpha = 0.5: score = (e^{-rho/2} - 1)/(-1/2) = 2(1 - e^{-rho/2}); Delta = 2(e^{1/2} - e^{-1/2}) = 4 sinh(1/2);
    beta*Delta = +-2 sinh(1/2). alpha = 1 falls back to reverse KL (plain DPO)."""
    check("f_dpo", [L(2 * math.sinh(0.5)), L(-2 * math.sinh(0.5))], f_divergence="alpha_divergence", f_alpha=0.5)
    check("f_dpo", [L(1), L(-1)], f_divergence="alpha_divergence", f_alpha=1.0)


def test_f_divergence_applies_to_ipo_like_trl():
    """TRL replaces rho by the f-score in ipo too: js scores [log2 + log s(1), log2 + log s(-1)] per token."""
    s_w = [math.log(2) - L(1), math.log(2) - L(-1)]
    s_l = [math.log(2) - L(-1), math.log(2) - L(1)]
    h = [s_w[0] / 4 - s_l[0] / 2, s_w[1] / 5 - s_l[1] / 10]
    check("ipo", [(h[0] - 1) ** 2, (h[1] - 1) ** 2], f_divergence="js_divergence")


def test_gradients_flow():
    x = inputs()
    pc = x.policy_chosen.clone().requires_grad_(True)
    for name, fn in LOSSES.items():
        loss = fn(LossInputs(**{**x.__dict__, "policy_chosen": pc})).mean()
        (g,) = torch.autograd.grad(loss, pc)
        assert torch.isfinite(g).all() and g.abs().sum() > 0, name
