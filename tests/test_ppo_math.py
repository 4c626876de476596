"""PPO's pure functions (`methods/core/trainers/ppo/math.py`), each against numbers worked by hand.

All tensors are float64 so the hand values hold to 1e-9; padding entries hold garbage (1000, nan, 99)
on purpose: a masked function must not look at them.
"""
from __future__ import annotations

import math

import pytest
import torch

from methods.core.trainers.ppo import math as pm


def t(xs):
    return torch.tensor(xs, dtype=torch.float64)


NAN = float("nan")
# the 2×3 batch with padding used by several tests: row 0 has 3 response tokens, row 1 has 2
MASK_3_2 = t([[1, 1, 1], [1, 1, 0]])


# --------------------------------------------------------------------------------------------------
# masked mean / var / whiten


def test_masked_mean_var_whiten_by_hand():
    # masked entries: 2, 2, 4 | 6, 6 ; the padding (1000) must be ignored
    x = t([[2, 2, 4], [6, 6, 1000]])
    # mean = (2 + 2 + 4 + 6 + 6) / 5 = 20 / 5 = 4
    assert pm.masked_mean(x, MASK_3_2).item() == pytest.approx(4.0)
    # per row: (2 + 2 + 4) / 3 = 8/3 ; (6 + 6) / 2 = 6
    assert pm.masked_mean(x, MASK_3_2, dim=1).tolist() == pytest.approx([8 / 3, 6.0])
    # deviations −2, −2, 0, 2, 2 -> squares 4 + 4 + 0 + 4 + 4 = 16
    # unbiased: 16 / (5 − 1) = 4 ; biased: 16 / 5 = 3.2
    assert pm.masked_var(x, MASK_3_2).item() == pytest.approx(4.0)
    assert pm.masked_var(x, MASK_3_2, unbiased=False).item() == pytest.approx(3.2)
    # whiten: (x − 4) · rsqrt(4 + 1e-8) ≈ (x − 4) / 2 -> [[−1, −1, 0], [1, 1, ·]]
    w = pm.masked_whiten(x, MASK_3_2)
    assert w[0].tolist() == pytest.approx([-1.0, -1.0, 0.0], abs=1e-7)
    assert w[1, :2].tolist() == pytest.approx([1.0, 1.0], abs=1e-7)
    # TRL applies the transform to the padding too (only the statistics skip it): (1000 − 4) / 2 = 498
    assert w[1, 2].item() == pytest.approx(498.0, rel=1e-7)
    # shift_mean=False adds the mean 4 back: [[3, 3, 4], [5, 5, ·]]
    w2 = pm.masked_whiten(x, MASK_3_2, shift_mean=False)
    assert w2[0].tolist() == pytest.approx([3.0, 3.0, 4.0], abs=1e-7)
    assert w2[1, :2].tolist() == pytest.approx([5.0, 5.0], abs=1e-7)


def test_masked_stats_ignore_nan_padding_and_refuse_empty_masks():
    x = t([[2, 2, 4], [6, 6, NAN]])
    assert pm.masked_mean(x, MASK_3_2).item() == pytest.approx(4.0)  # same numbers as above
    assert pm.masked_var(x, MASK_3_2).item() == pytest.approx(4.0)
    # an empty row has mean 0, not nan
    assert pm.masked_mean(x, t([[1, 1, 1], [0, 0, 0]]), dim=1).tolist() == pytest.approx([8 / 3, 0.0])
    with pytest.raises(ValueError, match="no entry"):
        pm.masked_var(x, torch.zeros_like(x))
    with pytest.raises(ValueError, match="single entry"):
        pm.masked_var(x, t([[1, 0, 0], [0, 0, 0]]))
    # a single entry has biased variance 0
    assert pm.masked_var(x, t([[1, 0, 0], [0, 0, 0]]), unbiased=False).item() == 0.0


# --------------------------------------------------------------------------------------------------
# KL estimators


def test_kl_k1_k3_by_hand():
    logp = t([-1.0, -2.0, -0.5])
    ref = t([-1.0, -1.0, -2.0])
    # k1 = logp − ref: 0, −1, 1.5
    assert pm.kl_k1(logp, ref).tolist() == pytest.approx([0.0, -1.0, 1.5])
    # k3 with r = ref − logp = 0, 1, −1.5:
    #   r = 0    : e^0 − 0 − 1 = 0
    #   r = 1    : e − 1 − 1 = 2.718282 − 2 = 0.718282
    #   r = −1.5 : e^−1.5 + 1.5 − 1 = 0.223130 + 0.5 = 0.723130
    k3 = pm.kl_k3(logp, ref)
    assert k3.tolist() == pytest.approx([0.0, 0.718282, 0.723130], abs=1e-6)
    assert k3[0].item() == 0.0 and bool((k3 >= 0).all())
    # the dispatcher
    assert pm.kl(logp, ref, "k1").tolist() == pm.kl_k1(logp, ref).tolist()
    assert pm.kl(logp, ref, "k3").tolist() == k3.tolist()
    with pytest.raises(ValueError, match=r"k1.*k3"):
        pm.kl(logp, ref, "k2")


# --------------------------------------------------------------------------------------------------
# token rewards


def test_token_rewards_by_hand():
    # row 0: 3 response tokens (last index 2); row 1: 4 (last index 3)
    mask = t([[1, 1, 1, 0], [1, 1, 1, 1]])
    kl = t([[1.0, 2.0, -1.0, 5.0], [0.5, 0.0, 1.0, 2.0]])
    score = t([2.0, -1.0])
    r = pm.token_rewards(score, kl, mask, beta=0.1)
    # row 0: −0.1·[1, 2, −1] = [−0.1, −0.2, 0.1], + score 2 at t = 2 -> [−0.1, −0.2, 2.1, 0 (pad)]
    # row 1: −0.1·[0.5, 0, 1, 2] = [−0.05, 0, −0.1, −0.2], + score −1 at t = 3 -> [..., −1.2]
    assert r[0].tolist() == pytest.approx([-0.1, -0.2, 2.1, 0.0])
    assert r[1].tolist() == pytest.approx([-0.05, 0.0, -0.1, -1.2])

    # row 1 has no EOS, penalty 1: its score becomes −1 − 1 = −2 (subtracted, TRL 0.11 PPOv2),
    # so its last reward is −0.2 − 2 = −2.2 (a *replaced* score would give −0.2 + 1 = 0.8); row 0 as before
    no_eos = torch.tensor([False, True])
    r = pm.token_rewards(score, kl, mask, beta=0.1, no_eos=no_eos, no_eos_penalty=1.0)
    assert r[0].tolist() == pytest.approx([-0.1, -0.2, 2.1, 0.0])
    assert r[1].tolist() == pytest.approx([-0.05, 0.0, -0.1, -2.2])
    # no_eos without a penalty changes nothing; a penalty without no_eos is refused
    r = pm.token_rewards(score, kl, mask, beta=0.1, no_eos=no_eos)
    assert r[1, 3].item() == pytest.approx(-1.2)
    with pytest.raises(ValueError):
        pm.token_rewards(score, kl, mask, beta=0.1, no_eos_penalty=1.0)
    # a row with no response token cannot carry its score
    with pytest.raises(ValueError):
        pm.token_rewards(score, kl, t([[1, 0, 0, 0], [0, 0, 0, 0]]), beta=0.1)


# --------------------------------------------------------------------------------------------------
# GAE

# row 0: 3 response tokens; row 1: 2 tokens, then padding holding garbage (99, 50)
GAE_R = t([[0.0, 0.0, 1.0], [0.1, 2.0, 99.0]])
GAE_V = t([[0.5, 0.6, 0.7], [0.4, 1.0, 50.0]])
# δ_t = r_t + γ·V_{t+1}·m_{t+1} − V_t, γ = 1:
#   row 0: δ2 = 1 + 0 − 0.7 = 0.3 ; δ1 = 0 + 0.7 − 0.6 = 0.1 ; δ0 = 0 + 0.6 − 0.5 = 0.1
#   row 1: δ1 = 2 + 50·0 − 1.0 = 1.0 (V beyond the end counts 0) ; δ0 = 0.1 + 1.0 − 0.4 = 0.7


def test_gae_lambda_1_is_future_rewards_minus_value():
    adv, ret = pm.gae(GAE_R, GAE_V, MASK_3_2, gamma=1.0, lam=1.0)
    # A_t = δ_t + A_{t+1}:
    #   row 0: A2 = 0.3 ; A1 = 0.1 + 0.3 = 0.4 ; A0 = 0.1 + 0.4 = 0.5
    #          check: future rewards 1, 1, 1 minus V 0.5, 0.6, 0.7 = 0.5, 0.4, 0.3
    #   row 1: A2 = 0 (masked) ; A1 = 1.0 ; A0 = 0.7 + 1.0 = 1.7
    #          check: future rewards 2.1, 2.0 minus V 0.4, 1.0 = 1.7, 1.0
    assert adv[0].tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert adv[1].tolist() == pytest.approx([1.7, 1.0, 0.0])
    # returns = A + V = the future rewards; 0 at the padding
    assert ret[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert ret[1].tolist() == pytest.approx([2.1, 2.0, 0.0])


def test_gae_lambda_095():
    adv, ret = pm.gae(GAE_R, GAE_V, MASK_3_2, gamma=1.0, lam=0.95)
    # A_t = δ_t + 0.95·A_{t+1}:
    #   row 0: A2 = 0.3 ; A1 = 0.1 + 0.95·0.3 = 0.385 ; A0 = 0.1 + 0.95·0.385 = 0.1 + 0.36575 = 0.46575
    #   row 1: A2 = 0 ; A1 = 1.0 ; A0 = 0.7 + 0.95·1.0 = 1.65
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3])
    assert adv[1].tolist() == pytest.approx([1.65, 1.0, 0.0])
    # returns = A + V: row 0: 0.96575, 0.985, 1.0 ; row 1: 2.05, 2.0, 0
    assert ret[0].tolist() == pytest.approx([0.96575, 0.985, 1.0])
    assert ret[1].tolist() == pytest.approx([2.05, 2.0, 0.0])


def test_gae_discount():
    # one row, γ = 0.5, λ = 1: r = [0, 1], V = [0.5, 0.2]
    #   δ1 = 1 − 0.2 = 0.8, A1 = 0.8 ; δ0 = 0 + 0.5·0.2 − 0.5 = −0.4, A0 = −0.4 + 0.5·0.8 = 0
    #   check: discounted return from t0 = 0 + 0.5·1 = 0.5 = V0, so A0 = 0
    adv, ret = pm.gae(t([[0.0, 1.0]]), t([[0.5, 0.2]]), t([[1, 1]]), gamma=0.5, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.0, 0.8])
    assert ret[0].tolist() == pytest.approx([0.5, 1.0])


# --------------------------------------------------------------------------------------------------
# policy loss


def test_policy_loss_inside_the_clip_range_is_minus_a_ratio():
    # ε = 0.2; ratios 1.1 and 0.9 lie in [0.8, 1.2], so the clipped term equals the unclipped one
    old = t([[0.0, 0.0]])
    logp = t([[math.log(1.1), math.log(0.9)]]).requires_grad_()
    adv = t([[2.0, -3.0]])
    loss, stats = pm.policy_loss(logp, old, adv, t([[1, 1]]), clip_eps=0.2)
    # −A·ρ: −2·1.1 = −2.2 ; 3·0.9 = 2.7 ; mean = 0.5 / 2 = 0.25
    assert loss.item() == pytest.approx(0.25)
    assert stats["clip_frac"].item() == 0.0
    # ρ mean = (1.1 + 0.9)/2 = 1 ; approx_kl = ½·(ln²1.1 + ln²0.9)/2 = ½·(0.0090840 + 0.0111009)/2 = 0.0050462
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    assert stats["approx_kl"].item() == pytest.approx(0.0050462, abs=1e-7)
    loss.backward()
    # d(−A·ρ)/d logp = −A·ρ, over 2 tokens: −2.2/2 = −1.1 ; 2.7/2 = 1.35
    assert logp.grad[0].tolist() == pytest.approx([-1.1, 1.35])


def test_policy_loss_outside_the_clip_range_has_zero_gradient():
    # ε = 0.2, old log-probs 0, so ρ = e^logp. Tokens (row 0 | row 1, last one padding):
    #   a: ρ 1.1, A +2 : −2.2 vs −2.2            -> −2.2, not clipped
    #   b: ρ 1.5, A +1 : −1.5 vs −1·1.2 = −1.2   -> −1.2, clipped (A > 0, ρ > 1+ε): grad 0
    #   c: ρ 0.5, A −1 :  0.5 vs  1·0.8 = 0.8    ->  0.8, clipped (A < 0, ρ < 1−ε): grad 0
    #   d: ρ 1.5, A −1 :  1.5 vs  1.2            ->  1.5, not clipped (the pessimistic side)
    #   e: ρ 0.5, A +1 : −0.5 vs −0.8            -> −0.5, not clipped
    #   pad: log-ratio 50 (ρ would be e^50), A nan -> ignored, in the loss and in the gradient
    ln = math.log
    logp = t([[ln(1.1), ln(1.5), ln(0.5)], [ln(1.5), ln(0.5), 50.0]]).requires_grad_()
    old = torch.zeros(2, 3, dtype=torch.float64)
    adv = t([[2.0, 1.0, -1.0], [-1.0, 1.0, NAN]])
    loss, stats = pm.policy_loss(logp, old, adv, MASK_3_2, clip_eps=0.2)
    # loss = (−2.2 − 1.2 + 0.8 + 1.5 − 0.5) / 5 = −1.6 / 5 = −0.32
    assert loss.item() == pytest.approx(-0.32)
    # clipped strictly: b and c -> 2 / 5
    assert stats["clip_frac"].item() == pytest.approx(0.4)
    # ρ mean = (1.1 + 1.5 + 0.5 + 1.5 + 0.5) / 5 = 5.1 / 5 = 1.02
    assert stats["ratio_mean"].item() == pytest.approx(1.02)
    # approx_kl = ½·(ln²1.1 + 2·ln²1.5 + 2·ln²0.5) / 5
    #           = ½·(0.0090840 + 2·0.1644020 + 2·0.4804530) / 5 = ½·1.2987940 / 5 = 0.1298794
    assert stats["approx_kl"].item() == pytest.approx(0.1298794, abs=1e-7)
    loss.backward()
    # grads (÷5 tokens): a −A·ρ = −2.2 -> −0.44 ; b 0 ; c 0 ; d 1.5 -> 0.3 ; e −0.5 -> −0.1 ; pad 0
    assert logp.grad[0].tolist() == pytest.approx([-0.44, 0.0, 0.0])
    assert logp.grad[1].tolist() == pytest.approx([0.3, -0.1, 0.0])
    assert logp.grad[0, 1].item() == 0.0 and logp.grad[0, 2].item() == 0.0  # exactly zero


# --------------------------------------------------------------------------------------------------
# value loss

# c = 0.2. Tokens (row 0 | row 1; row 0's last is padding):
#   a: old 1.0, v 1.1, R 2.0 : v − old = 0.1, v_clip 1.1 : 0.81 vs 0.81        -> 0.81, not clipped
#   b: old 1.0, v 1.5, R 2.0 : v_clip 1.2 : (−0.5)² = 0.25 vs (−0.8)² = 0.64   -> 0.64, clipped
#   c: old 1.0, v 1.5, R 1.0 : v_clip 1.2 : 0.25 vs 0.04                        -> 0.25
#   d: old 0.0, v −1,  R 0.5 : v_clip −0.2 : 2.25 vs 0.49                       -> 2.25
#   e: old 0.0, v 0.5, R 1.0 : v_clip 0.2 : 0.25 vs 0.64                        -> 0.64, clipped
VL_OLD = t([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
VL_V = t([[1.1, 1.5, 1000.0], [1.5, -1.0, 0.5]])
VL_R = t([[2.0, 2.0, NAN], [1.0, 0.5, 1.0]])
VL_MASK = t([[1, 1, 0], [1, 1, 1]])


def test_value_loss_clipped_by_hand():
    v = VL_V.clone().requires_grad_()
    loss, stats = pm.value_loss(v, VL_OLD, VL_R, VL_MASK, clip_range=0.2)
    # ½·(0.81 + 0.64 + 0.25 + 2.25 + 0.64) / 5 = ½·4.59 / 5 = ½·0.918 = 0.459
    assert loss.item() == pytest.approx(0.459)
    assert stats["vf_clip_frac"].item() == pytest.approx(0.4)  # b and e
    loss.backward()
    # unclipped tokens: d/dv ½·mean (v − R)² = (v − R)/5 : a −0.9/5 = −0.18 ; c 0.5/5 = 0.1 ; d −1.5/5 = −0.3
    # clipped tokens (b, e): v_clip is constant in v there -> 0
    assert v.grad[0].tolist() == pytest.approx([-0.18, 0.0, 0.0])
    assert v.grad[1].tolist() == pytest.approx([0.1, -0.3, 0.0])


def test_value_loss_unclipped_by_hand():
    # a clip range no token reaches: only (v − R)² counts
    loss, stats = pm.value_loss(VL_V, VL_OLD, VL_R, VL_MASK, clip_range=1e6)
    # ½·(0.81 + 0.25 + 0.25 + 2.25 + 0.25) / 5 = ½·3.81 / 5 = 0.381
    assert loss.item() == pytest.approx(0.381)
    assert stats["vf_clip_frac"].item() == 0.0


def test_explained_variance():
    # masked returns 2, 2 | 1, 0.5, 1 (mean 1.3, Var > 0); padding v/R is garbage
    perfect = torch.where(VL_MASK.bool(), VL_R, t(1000.0))
    _, stats = pm.value_loss(perfect, VL_OLD, VL_R, VL_MASK, clip_range=0.2)
    assert stats["explained_variance"].item() == pytest.approx(1.0)  # Var(R − R) = 0
    # a constant critic: Var(R − 7) = Var(R) -> 1 − 1 = 0 (≤ 0)
    _, stats = pm.value_loss(torch.full_like(VL_R, 7.0), VL_OLD, VL_R, VL_MASK, clip_range=0.2)
    assert stats["explained_variance"].item() == pytest.approx(0.0, abs=1e-12)
    assert stats["explained_variance"].item() <= 1e-12
    # worse than constant, v = −R: Var(2R) = 4·Var(R) -> 1 − 4 = −3
    _, stats = pm.value_loss(-perfect, VL_OLD, VL_R, VL_MASK, clip_range=0.2)
    assert stats["explained_variance"].item() == pytest.approx(-3.0)


# --------------------------------------------------------------------------------------------------
# from logits


def test_logprobs_from_logits_with_temperature():
    logits = t([[[2.0, 0.0, -2.0], [2.0, 0.0, -2.0]]])  # (B=1, T=2, V=3)
    labels = torch.tensor([[0, 2]])
    # τ = 2: z/τ = [1, 0, −1]; Z = e + 1 + e^−1 = 2.718282 + 1 + 0.367879 = 4.086161, ln Z = 1.407606
    #   label 0: 1 − 1.407606 = −0.407606 ; label 2: −1 − 1.407606 = −2.407606
    lp = pm.logprobs_from_logits(logits, labels, temperature=2.0)
    assert lp.shape == (1, 2)
    assert lp[0].tolist() == pytest.approx([-0.407606, -2.407606], abs=1e-6)
    # τ = 1: Z = e² + 1 + e^−2 = 7.389056 + 1 + 0.135335 = 8.524391, ln Z = 2.142931 -> label 0: −0.142931
    assert pm.logprobs_from_logits(logits, labels)[0, 0].item() == pytest.approx(-0.142931, abs=1e-6)
    with pytest.raises(ValueError):
        pm.logprobs_from_logits(logits, labels, temperature=0.0)


def test_entropy_from_logits():
    # uniform over V = 5 (any constant logit): H = ln 5 = 1.609438
    h = pm.entropy_from_logits(torch.full((2, 3, 5), 3.7, dtype=torch.float64))
    assert h.shape == (2, 3)
    assert h.flatten().tolist() == pytest.approx([1.609438] * 6, abs=1e-6)
    # logits [ln 3, 0] -> p = [3/4, 1/4]: H = 0.75·ln(4/3) + 0.25·ln 4 = 0.75·0.287682 + 0.25·1.386294 = 0.562335
    assert pm.entropy_from_logits(t([math.log(3.0), 0.0])).item() == pytest.approx(0.562335, abs=1e-6)
    # half precision is upcast
    assert pm.entropy_from_logits(torch.zeros(4, dtype=torch.bfloat16)).dtype == torch.float32


# --------------------------------------------------------------------------------------------------
# KL controllers


def _adaptive():
    return pm.AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=10000)


def test_adaptive_kl_controller_by_hand():
    # n_steps / horizon = 100 / 10000 = 0.01
    c = _adaptive()
    # KL 12: 12/6 − 1 = 1 -> clipped to 0.2 -> 0.2·(1 + 0.2·0.01) = 0.2004
    assert c.update(12.0, 100) == pytest.approx(0.2004)
    assert c.value == pytest.approx(0.2004)
    # KL 6: 6/6 − 1 = 0 -> unchanged
    c = _adaptive()
    c.update(torch.tensor(6.0), 100)
    assert c.value == pytest.approx(0.2)
    # KL 3: 3/6 − 1 = −0.5 -> clipped to −0.2 -> 0.2·(1 − 0.2·0.01) = 0.1996
    c = _adaptive()
    c.update(3.0, 100)
    assert c.value == pytest.approx(0.1996)
    # inside the clip: KL 6.6 -> 0.1 -> 0.2·1.001 = 0.2002 ; KL 5.4 -> −0.1 -> 0.2·0.999 = 0.1998
    c = _adaptive()
    c.update(6.6, 100)
    assert c.value == pytest.approx(0.2002)
    c = _adaptive()
    c.update(5.4, 100)
    assert c.value == pytest.approx(0.1998)


def test_kl_controllers_state_dict_round_trip():
    c = _adaptive()
    c.update(12.0, 100)  # β = 0.2004
    resumed = pm.AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=10000)
    resumed.load_state_dict(c.state_dict())
    assert resumed.value == pytest.approx(0.2004)
    # and it continues from there: 0.2004·1.002 = 0.2008008
    resumed.update(12.0, 100)
    assert resumed.value == pytest.approx(0.2008008)

    f = pm.FixedKLController(0.05)
    assert f.update(100.0, 100) == 0.05 and f.value == 0.05
    g = pm.FixedKLController(0.3)
    g.load_state_dict(f.state_dict())
    assert g.value == 0.05
    with pytest.raises(ValueError):
        g.load_state_dict(c.state_dict())  # an adaptive state into a fixed controller
