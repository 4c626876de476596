"""The contract between the pipeline and a method, in one screen.

    method(run) -> MethodResult(policy, metrics, iterations)
    pipeline:  build + validate every part -> method(run) -> evaluate(policy) once -> leaderboard

- A method is a callable `method(run) -> MethodResult`, instantiated from `conf/method/<name>.yaml`,
  with `validate(run)` for cheap checks before anything heavy starts. It works in its own stages
  (`run.stage(name, fn)`), never in the pipeline's (`eval` and `<label>_eval` are refused).
- `MethodResult.policy` is what gets evaluated: weights (a model directory), plus an optional
  inference procedure `respond(items) -> one Completion per item` for methods that act at inference
  time (Self-Refine's rounds, PIT's improver). Without `respond`, the evaluation generates from the
  weights with the eval settings.
- `MethodResult.iterations`: one `Iteration` per step of the method (SPA's π_0..π_n, Self-Refine's
  rounds) with its own stats and, when it should be evaluated, its policy. The pipeline evaluates each
  through the same call as the final policy (stage `<label>_eval`); an iteration whose policy *is* the
  final one reuses the final evaluation. Every scalar in the stats and metrics reaches leaderboard.csv.
- The budget: `MethodResult.labelled_pairs` (the method's label budget) and what its stages spent
  (generated tokens, optimiser steps, wall time; `methods.core.budget`) reach metrics.json as `budget_*`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence


@dataclass
class Policy:
    weights: str  # a model directory (the base model's for inference-time methods)
    respond: Callable[[Sequence[dict]], list[Any]] | None = None  # items -> one Completion per item


@dataclass
class Iteration:
    label: str  # names its evaluation stage `<label>_eval` and its generator `<variant>_<label>`
    index: int  # the leaderboard's `iteration` column
    stats: dict = field(default_factory=dict)  # joins the iteration's row (scalars)
    policy: Policy | None = None  # None: not evaluated (its row holds the stats only)


@dataclass
class MethodResult:
    policy: Policy
    metrics: dict = field(default_factory=dict)  # join metrics.json (scalars reach leaderboard.csv)
    iterations: list[Iteration] = field(default_factory=list)
    # the label budget: human-labelled (gold) pairs the method trained on, pairs held out only to measure
    # it not counted; None = the method does not say. metrics.json: `budget_labelled_pairs`
    labelled_pairs: int | None = None


class Method(Protocol):
    name: str

    def validate(self, run) -> None: ...

    def __call__(self, run) -> MethodResult: ...


RESERVED_STAGES = ("eval", "references")


def reserved(stage: str) -> bool:
    """Stages only the pipeline writes: the final evaluation, the iterations' evaluations, the references."""
    top = stage.split("/")[0]
    return top in RESERVED_STAGES or top.endswith("_eval")


def stored_answers(items: Sequence[dict], completions: Sequence[Any], who: str) -> Callable[[Sequence[dict]], list]:
    """A `Policy.respond` for methods that answered a fixed item set at inference time (Self-Refine's and
    PIT's rounds): each item's stored completion by id; an item it has no answer for is refused."""
    by_id = {it["id"]: c for it, c in zip(items, completions)}

    def respond(asked):
        missing = [it["id"] for it in asked if it["id"] not in by_id]
        if missing:
            raise ValueError(f"{who} answered its eval set only; no answer for {missing[:5]}")
        return [by_id[it["id"]] for it in asked]

    return respond
