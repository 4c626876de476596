"""Paired comparisons of runs that share an eval set and a baseline, per prompt.

Each run's annotations give, per eval prompt k, the preference p_k ∈ [1, 2] of its output over the
baseline's; its win score is w_k = p_k − 1 (1 win, 0.5 tie, 0 loss; the win rate is 100·mean w).
Two runs A and B on the same prompts differ per prompt by d_k = w_k(A) − w_k(B), and

  delta      = 100 · mean_k d_k                        (= win rate A − win rate B, in points)
  ci_low/high: the 2.5% and 97.5% percentiles of 100 · mean(d resampled) over `n_boot` bootstrap
             resamples of the prompts (the same resampled prompts for A and B: a paired bootstrap),
             drawn with numpy's default_rng(seed);
  sign test: n_better = #{d_k > 0}, n_worse = #{d_k < 0}, p_sign = two-sided exact binomial
             p-value of n_better among n_better + n_worse at 1/2 (ties dropped), 1.0 when all tie.

Against the SFT baseline itself (w_k = 0.5 for every k) delta is win rate − 50.
Across seeds (runs that differ only in `seed`): mean ± SE, SE = sample std (ddof 1) / sqrt(n).
"""
from __future__ import annotations

import math
from typing import Sequence

N_BOOT = 2000


def win_scores(annotations: Sequence[dict]) -> dict[str, float]:
    """instruction -> w = preference − 1 (alpaca_eval's legacy tie 0 -> 0.5)."""
    out = {}
    for row in annotations:
        p = row["preference"]
        if p is None or (isinstance(p, float) and math.isnan(p)):
            continue
        out[row["instruction"]] = 0.5 if p == 0 else float(p) - 1.0
    return out


def pooled_scores(per_run: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each prompt's win score averaged over runs (seeds), on the prompts every run has."""
    common = set.intersection(*(set(s) for s in per_run))
    return {k: sum(s[k] for s in per_run) / len(per_run) for k in common}


def paired(a: dict[str, float], b: dict[str, float], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Paired difference of two runs' win scores on the prompts both have (see the module docstring)."""
    import numpy as np
    from scipy.stats import binomtest

    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("paired comparison: the two runs share no eval prompt")
    d = np.array([a[k] - b[k] for k in keys])
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    boot = 100 * d[idx].mean(axis=1)
    better, worse = int((d > 0).sum()), int((d < 0).sum())
    p_sign = binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0
    return {
        "delta": float(100 * d.mean()),
        "ci_low": float(np.percentile(boot, 2.5)),
        "ci_high": float(np.percentile(boot, 97.5)),
        "n_better": better,
        "n_worse": worse,
        "p_sign": float(p_sign),
        "n_prompts": len(keys),
    }


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (ddof 1) over seeds; SE is NaN for one value."""
    xs = [float(x) for x in xs]
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


def prefixed(prefix: str, d: dict) -> dict:
    """`paired`'s keys named for one comparison: {prefix_delta, prefix_ci_low, …}."""
    return {f"{prefix}_{k}": v for k, v in d.items()}
