"""The pure functions of PPO with a critic, for RLHF on token sequences.

Shapes: ``(B, T)`` is batch × response time steps (the prompt is already cut off). ``mask`` is 1.0 on
response tokens and 0.0 on the padding after each response's end, so every row of ``mask`` is a run of
ones followed by zeros (a contiguous prefix; rows may have different lengths). Entries at masked-out
positions may hold anything, even ``nan`` or ``inf``: every reduction below selects with the mask
(``torch.where``) instead of multiplying by it, so padding never leaks into a result.

Conventions, and where they come from:

- Statistics (``masked_mean``/``masked_var``/``masked_whiten``) as TRL 0.11's ``trl.core``: one
  mean/variance over all masked entries, Bessel-corrected variance, ``rsqrt(var + 1e-8)``.
- The sequence score goes on each row's last response token, and the value after it is 0 (terminal),
  as verl and OpenRLHF do. (TRL 0.11's PPOv2 put the score one position past the last token,
  ``sequence_lengths + 1``, and kept the value there; we don't.)
- ``missing_eos_penalty`` is *subtracted* from the score of rows without EOS, as TRL 0.11's PPOv2 did.
- The adaptive KL controller is TRL 0.11's ``AdaptiveKLController`` (Ziegler et al. 2019).

Everything is plain torch; nothing here knows about models, tokenisers or optimisers.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "entropy_from_logits",
    "gae",
    "kl",
    "kl_k1",
    "kl_k3",
    "logprobs_from_logits",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "policy_loss",
    "token_rewards",
    "value_loss",
]


# --------------------------------------------------------------------------------------------------
# masked statistics


def _select(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` where ``mask`` is nonzero, 0 elsewhere (safe against nan/inf in the padding)."""
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    r"""Mean of ``x`` over the entries where ``mask`` is 1.

    .. math::

        \operatorname{mean}_m(x) = \frac{\sum_i m_i x_i}{\sum_i m_i}

    over all entries (``dim=None``, a 0-dim tensor) or along ``dim`` (e.g. ``dim=1``: one mean per row).

    Args:
        x: values, any shape.
        mask: 0/1, same shape as ``x``.
        dim: reduce along this dimension only; ``None`` reduces everything.

    Returns:
        The masked mean. Where no entry is selected (an empty mask, or an empty row with ``dim``) the
        result is 0 rather than ``nan`` (the denominator is clamped to at least 1).
    """
    mask = mask.to(x.dtype)
    if dim is None:
        return _select(x, mask).sum() / mask.sum().clamp(min=1.0)
    return _select(x, mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    r"""Variance of ``x`` over the entries where ``mask`` is 1 (one number for the whole tensor).

    .. math::

        \mu = \operatorname{mean}_m(x), \qquad
        \sigma^2 = \operatorname{mean}_m\big((x - \mu)^2\big) \cdot
        \begin{cases} \frac{n}{n-1} & \text{unbiased (Bessel)} \\ 1 & \text{otherwise} \end{cases},
        \qquad n = \sum_i m_i

    Args:
        x: values, any shape.
        mask: 0/1, same shape as ``x``.
        unbiased: apply Bessel's correction ``n / (n - 1)`` (TRL 0.11's default).

    Raises:
        ValueError: if no entry is selected, or only one is and ``unbiased`` is set.
    """
    n = mask.to(x.dtype).sum()
    if n == 0:
        raise ValueError("masked_var: the mask selects no entry")
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        if n == 1:
            raise ValueError("masked_var: unbiased variance of a single entry (n / (n - 1) divides by 0)")
        var = var * (n / (n - 1))
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    r"""Whiten ``x`` with the mean and (unbiased) variance of its masked entries, as TRL 0.11 did.

    .. math::

        \hat{x} = (x - \mu)\,\frac{1}{\sqrt{\sigma^2 + 10^{-8}}} \;\big(+\,\mu \text{ if not shift\_mean}\big)

    with :math:`\mu, \sigma^2` from :func:`masked_mean` and :func:`masked_var` (unbiased). With
    ``shift_mean=False`` only the scale changes: the mean is added back (TRL whitens rewards so).

    The transform is applied to every entry, the masked-out ones too (as TRL); only the statistics
    ignore them. Re-mask afterwards if the padding must stay 0 (e.g. advantages).
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask, unbiased=True)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


# --------------------------------------------------------------------------------------------------
# KL estimators, per token


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""Schulman's k1 estimator of :math:`\mathrm{KL}(\pi \,\|\, \pi_{ref})` per token, for tokens sampled from π.

    .. math::

        k_1 = \log \pi(y_t) - \log \pi_{ref}(y_t)

    Unbiased, can be negative per token.
    """
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""Schulman's k3 estimator of :math:`\mathrm{KL}(\pi \,\|\, \pi_{ref})` per token, for tokens sampled from π.

    .. math::

        r = \log \pi_{ref}(y_t) - \log \pi(y_t), \qquad k_3 = e^{r} - r - 1 \;\ge 0

    Unbiased (since :math:`\mathbb{E}_\pi[e^r] = 1`), never negative (:math:`e^r \ge 1 + r`), and 0
    exactly where the two log-probs agree. No clamping: a huge ``r`` overflows ``exp``.
    """
    r = ref_logp - logp
    return torch.exp(r) - r - 1.0


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"k1": kl_k1, "k3": kl_k3}


def kl(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL estimate of ``kind`` (a key of :data:`KL_ESTIMATORS`: ``"k1"`` or ``"k3"``).

    Raises:
        ValueError: for any other ``kind``, naming the valid ones.
    """
    try:
        fn = KL_ESTIMATORS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown KL estimator {kind!r}; valid kinds: {sorted(KL_ESTIMATORS)}") from None
    return fn(logp, ref_logp)


# --------------------------------------------------------------------------------------------------
# rewards and advantages


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the last index where ``mask`` is 1. Raises if a row has none."""
    m = mask.bool()
    if not bool(m.any(dim=1).all()):
        raise ValueError("token_rewards: a row of `mask` has no response token to carry its score")
    T = m.shape[1]
    return (T - 1) - m.flip(dims=[1]).int().argmax(dim=1)


def token_rewards(
    score: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    no_eos: torch.Tensor | None = None,
    no_eos_penalty: float | None = None,
) -> torch.Tensor:
    r"""Per-token rewards: a KL penalty on every response token, the sequence score on the last one.

    .. math::

        s'_b = s_b - p\,[\text{row } b \text{ has no EOS}], \qquad
        r_{b,t} = -\beta\,\mathrm{kl}_{b,t}\,m_{b,t} + s'_b\,[t = L_b]

    where :math:`L_b` is row b's last response index (the last t with :math:`m_{b,t} = 1`) and
    :math:`p` is ``no_eos_penalty``. Padding positions get reward 0.

    The no-EOS rule is TRL 0.11 PPOv2's ``missing_eos_penalty``: the penalty is **subtracted** from
    the score of rows that never emitted EOS (not substituted for it). It applies only when both
    ``no_eos`` and ``no_eos_penalty`` are given; ``no_eos`` alone (penalty ``None``) changes nothing.

    Args:
        score: (B,) sequence scores from the reward model.
        kl: (B, T) per-token KL estimate (see :func:`kl`).
        mask: (B, T) response mask; every row needs at least one response token.
        beta: KL coefficient β (e.g. ``controller.value``).
        no_eos: (B,) bool, True for rows that contain no EOS token.
        no_eos_penalty: the amount subtracted from those rows' score.

    Returns:
        (B, T) rewards, in ``kl``'s dtype.

    Raises:
        ValueError: a row without response tokens, or ``no_eos_penalty`` without ``no_eos``.
    """
    if no_eos_penalty is not None and no_eos is None:
        raise ValueError("token_rewards: `no_eos_penalty` given without `no_eos` (which rows lack EOS?)")
    score = score.to(device=kl.device, dtype=kl.dtype)
    if no_eos is not None and no_eos_penalty is not None:
        score = score - float(no_eos_penalty) * no_eos.to(device=kl.device, dtype=kl.dtype)
    rewards = _select(-beta * kl, mask)
    last = _last_index(mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += score
    return rewards


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised advantage estimation (Schulman et al. 2016) over (B, T), rows of any lengths.

    .. math::

        \delta_t = r_t + \gamma\, V_{t+1}\, m_{t+1} - V_t, \qquad
        A_t = \big(\delta_t + \gamma\lambda\, A_{t+1}\big)\, m_t, \qquad
        R_t = (A_t + V_t)\, m_t

    with :math:`V_T = A_T = 0`: the value after a row's last response token counts as 0 (the episode
    ends there), so the recursion restarts at each row's own end. With γ = λ = 1,
    :math:`A_t = \sum_{k \ge t} r_k - V_t` and :math:`R_t = \sum_{k \ge t} r_k`.

    Advantages and returns are 0 at masked positions. Inputs are detached: both outputs are targets.

    Args:
        rewards: (B, T), e.g. from :func:`token_rewards`.
        values: (B, T) critic values at rollout time.
        mask: (B, T) response mask (a run of ones then zeros per row).
        gamma: discount γ.
        lam: GAE λ.

    Returns:
        ``(advantages, returns)``, both (B, T).
    """
    m = mask.to(values.dtype)
    r = _select(rewards.detach().to(values.dtype), m)
    v = _select(values.detach(), m)
    T = v.shape[1]
    adv = torch.zeros_like(v)
    next_v = torch.zeros_like(v[:, 0])  # V_{t+1} m_{t+1}
    next_a = torch.zeros_like(v[:, 0])  # A_{t+1}
    for t in reversed(range(T)):
        delta = r[:, t] + gamma * next_v - v[:, t]
        a_t = (delta + gamma * lam * next_a) * m[:, t]
        adv[:, t] = a_t
        next_a, next_v = a_t, v[:, t]  # v is already 0 where masked
    returns = (adv + v) * m
    return adv, returns


# --------------------------------------------------------------------------------------------------
# losses


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""PPO's clipped surrogate, as a loss to minimise (token-level mean over the masked tokens).

    .. math::

        \rho_t = e^{\log\pi_\theta(y_t) - \log\pi_{old}(y_t)}, \qquad
        \mathcal{L} = \operatorname{mean}_m \max\!\big(-A_t\,\rho_t,\; -A_t\,\operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\big)

    Where the clipped term wins (A > 0 and ρ > 1+ε, or A < 0 and ρ < 1−ε) it is constant in θ,
    so that token's gradient is exactly 0.

    The log-ratio and the advantages are set to 0 at masked positions before use, so garbage in the
    padding (log-probs that overflow ``exp``, ``nan`` advantages) cannot turn gradients into ``nan``.

    Args:
        logp: (B, T) log-probs of the taken tokens under the current policy (with grad).
        old_logp: (B, T) the same at rollout time (detached).
        advantages: (B, T), usually whitened.
        mask: (B, T) response mask.
        clip_eps: ε.

    Returns:
        ``(loss, stats)``; ``stats`` are detached 0-dim tensors:

        - ``clip_frac``: share of masked tokens where the clipped term is the max and strictly
          larger than the unclipped one;
        - ``approx_kl``: :math:`\operatorname{mean}_m \tfrac12 (\log\pi_\theta - \log\pi_{old})^2`;
        - ``ratio_mean``: :math:`\operatorname{mean}_m \rho`.
    """
    log_ratio = _select(logp - old_logp, mask)
    ratio = torch.exp(log_ratio)
    adv = _select(advantages, mask)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_frac": masked_mean((clipped > unclipped).to(ratio.dtype), mask),
            "approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""The critic's clipped squared error (PPO2 / TRL style), token-level mean over the masked tokens.

    .. math::

        V^{clip}_t = V^{old}_t + \operatorname{clip}(V_t - V^{old}_t, -c, c), \qquad
        \mathcal{L}_V = \tfrac12 \operatorname{mean}_m \max\!\big((V_t - R_t)^2,\; (V^{clip}_t - R_t)^2\big)

    Residuals are set to 0 at masked positions before squaring, so garbage in the padding (e.g. ``nan``
    returns) cannot turn gradients into ``nan``.

    Args:
        values: (B, T) current critic values (with grad).
        old_values: (B, T) critic values at rollout time.
        returns: (B, T) targets, e.g. from :func:`gae`.
        mask: (B, T) response mask.
        clip_range: c.

    Returns:
        ``(loss, stats)``; ``stats`` are detached 0-dim tensors:

        - ``vf_clip_frac``: share of masked tokens where the clipped error is strictly the larger;
        - ``explained_variance``: :math:`1 - \mathrm{Var}_m(R - V) / \mathrm{Var}_m(R)` over the masked
          entries (1 for a perfect critic, 0 for any constant one, below 0 for worse); ``nan`` when
          :math:`\mathrm{Var}_m(R) = 0` (as cleanrl).
    """
    v_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    err = _select(values - returns, mask) ** 2
    err_clipped = _select(v_clipped - returns, mask) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        v, R = values.detach(), returns.detach()
        var_r = masked_var(R, mask, unbiased=False)
        if var_r == 0:
            ev = torch.full((), float("nan"), dtype=v.dtype, device=v.device)
        else:
            ev = 1.0 - masked_var(R - v, mask, unbiased=False) / var_r
        stats = {
            "vf_clip_frac": masked_mean((err_clipped > err).to(v.dtype), mask),
            "explained_variance": ev,
        }
    return loss, stats


# --------------------------------------------------------------------------------------------------
# from logits


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    r"""Entropy of the categorical distribution at every position, over the last dimension.

    .. math::

        H = -\sum_v p_v \log p_v = \operatorname{logsumexp}(z) - \sum_v \operatorname{softmax}(z)_v\, z_v

    Args:
        logits: (..., V). Half-precision logits are upcast to float32.

    Returns:
        (...) entropies; uniform logits give :math:`\log V`.
    """
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1)


def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    r"""Log-probabilities of ``labels`` under the temperature-scaled softmax of ``logits``.

    .. math::

        \log p(y) = \frac{z_y}{\tau} - \operatorname{logsumexp}_v \frac{z_v}{\tau}
                  = \operatorname{log\_softmax}(z / \tau)_y

    Use the sampling temperature τ both at rollout and at the update, so that the ratio
    :math:`\pi_\theta / \pi_{old}` compares the distribution the tokens were actually drawn from.

    Args:
        logits: (..., V). Half-precision logits are upcast to float32.
        labels: (...) token ids (long).
        temperature: τ > 0.

    Returns:
        (...) log-probs.
    """
    if not temperature > 0:
        raise ValueError(f"logprobs_from_logits: temperature must be > 0, got {temperature}")
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if temperature != 1.0:
        z = z / temperature
    picked = torch.gather(z, -1, labels.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(z, dim=-1)


# --------------------------------------------------------------------------------------------------
# KL coefficient controllers


class AdaptiveKLController:
    r"""Adaptive KL coefficient (Ziegler et al. 2019), TRL 0.11's ``AdaptiveKLController`` rule.

    .. math::

        e = \operatorname{clip}\!\Big(\frac{\mathrm{KL}}{\mathrm{KL}_{target}} - 1,\; -0.2,\; 0.2\Big),
        \qquad \beta \leftarrow \beta \cdot \Big(1 + e \cdot \frac{n_{steps}}{\text{horizon}}\Big)

    ``value`` is the current β. ``state_dict()``/``load_state_dict()`` carry β (with target and
    horizon) so that a resumed run continues from the saved β, not from ``init_kl_coef``.
    """

    kind = "adaptive"

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if not target > 0:
            raise ValueError(f"AdaptiveKLController: target must be > 0, got {target}")
        if not horizon > 0:
            raise ValueError(f"AdaptiveKLController: horizon must be > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move β by the rule above; returns the new β. ``current_kl`` may be a 0-dim tensor."""
        err = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + err * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(self.kind, state)
        self.value = float(state["value"])
        self.target = float(state.get("target", self.target))
        self.horizon = float(state.get("horizon", self.horizon))


class FixedKLController:
    """A constant KL coefficient with :class:`AdaptiveKLController`'s interface (``update`` does nothing)."""

    kind = "fixed"

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(self.kind, state)
        self.value = float(state["value"])


def _check_kind(kind: str, state: dict) -> None:
    saved = state.get("kind", kind)
    if saved != kind:
        raise ValueError(f"KL controller state is for a {saved!r} controller, not {kind!r}")
