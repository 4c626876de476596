"""The judge interface every method and the evaluation share.

A judge compares two outputs for the same item and returns an AlpacaEval-style preference:
1.0 = the first output is better, 2.0 = the second is better, 1.5 = tie; values in between
are soft preferences (e.g. from token probabilities).
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence, runtime_checkable


class PairwiseJudge(Protocol):
    name: str

    def compare(self, items: Sequence[dict], outputs_1: Sequence[str], outputs_2: Sequence[str]) -> list[float]:
        """One preference in [1, 2] per item. `items` carry at least `instruction`."""
        ...


class PointwiseJudge(Protocol):
    """A judge that can also score a single output (gold judge, reward models)."""

    name: str

    def score(self, items: Sequence[dict], outputs: Sequence[str]) -> list[float]: ...


@runtime_checkable
class Scorer(Protocol):
    """The capability `isinstance` checks: scores single outputs (pointwise judges, reward models, the gold
    judge); a judge without it only compares pairs."""

    def score(self, items: Sequence[dict], outputs: Sequence[str]) -> list[float]: ...


def preference_from_scores(s1: float, s2: float, tie_tol: float = 1e-9) -> float:
    """AlpacaEval encoding of two scalar scores: 1 if the first is higher, 2 if the second, 1.5 if equal."""
    if abs(s1 - s2) <= tie_tol:
        return 1.5
    return 1.0 if s1 > s2 else 2.0


def sigmoid(x: float) -> float:
    """σ(x) without overflow for large |x|."""
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
