"""SER's self-labelling rule, as pure functions (Huang et al. 2024, §3; the released
`rm_loop_filter_by_self.py`).

The reward model scores both answers of an unlabelled pair, p = σ(RM(x, y)). A pair's learning status:

    easy   one p > τ_high and the other p < τ_low     (the model is sure of both answers)
    hard   not easy, and |p₁ − p₂| ≥ τ_Δ              (it is sure of the difference only)
    None   neither: the pair stays in the pool

`rule="switch"` (the paper): a loop uses the easy pairs while at least `min_pairs` qualify, else the
hard ones when at least `min_pairs` of those do; when neither yields enough, the loop stops.
`rule="released"` (the released code): easy and hard pairs together, in one pass; it stops when fewer
than `min_pairs` qualify. The higher-scored answer becomes "chosen".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

EASY, HARD = "easy", "hard"
RULES = ("switch", "released")


@dataclass(frozen=True)
class Thresholds:
    high: float = 0.55  # τ_high
    low: float = 0.45  # τ_low
    delta: float = 0.3  # τ_Δ

    def check(self, where: str = "method") -> None:
        if not 0 <= self.low <= self.high <= 1:
            raise ValueError(f"{where}.tau_low={self.low}, tau_high={self.high}: need 0 <= tau_low <= tau_high <= 1")
        if not 0 < self.delta <= 1:
            raise ValueError(f"{where}.tau_delta={self.delta}: need 0 < tau_delta <= 1")


def status(p1: float, p2: float, th: Thresholds) -> str | None:
    if (p1 > th.high and p2 < th.low) or (p2 > th.high and p1 < th.low):
        return EASY
    if abs(p1 - p2) >= th.delta:
        return HARD
    return None


def choose(statuses: Sequence[str | None], min_pairs: int, rule: str) -> tuple[str | None, set]:
    """(the status this loop uses, or None to stop; the indices of the pairs it selects)."""
    easy = {k for k, s in enumerate(statuses) if s == EASY}
    hard = {k for k, s in enumerate(statuses) if s == HARD}
    if rule == "released":
        both = easy | hard
        return ("easy+hard", both) if len(both) >= min_pairs else (None, set())
    if len(easy) >= min_pairs:
        return EASY, easy
    if len(hard) >= min_pairs:
        return HARD, hard
    return None, set()


def resolve_min_pairs(min_pairs: float, pool_size: int) -> int:
    """`min_pairs` >= 1 is a count; in (0, 1) a share of the initial pool ("varies with data size"),
    rounded up, at least 1."""
    return int(min_pairs) if min_pairs >= 1 else max(1, math.ceil(min_pairs * pool_size))


def pairwise_correct(r_chosen: float, r_rejected: float) -> float:
    """1 when the gold-chosen answer scores higher, 0 when lower, ½ on a tie (a coin flip's expectation)."""
    return 1.0 if r_chosen > r_rejected else 0.0 if r_chosen < r_rejected else 0.5
