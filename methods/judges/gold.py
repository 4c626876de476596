"""The gold judge of `ifeval_synth` (version `GOLD_VERSION`): a response must answer the request, then
earns credit for the constraints it meets.

    score = 0                                                  if the content gate fails
          = W_CONTENT · content + (1 − W_CONTENT) · met        otherwise

The gate (methods.data.ifeval_synth.content) refuses empty, too short, echoed, repetitive,
keyword-list and off-topic answers; `content` is 1 for an everyday request that passes it and the
share of requested category members named for a list request; `met` is the fraction of the prompt's
constraints met. So an on-topic answer that meets no constraint (0.4) beats any answer that ignores
the request (0), and meeting constraints only ranks answers that pass the gate.
v1 (the fraction of constraints met, nothing else) let a constant "yes?" beat the base model.

Implements both `PointwiseJudge` (`score`) and `PairwiseJudge` (`compare`: 1 = first output better,
2 = second better, 1.5 = tie, from the two scores). Items must carry `constraints` (constraint
dicts, as `IFEvalSynth` makes them); any other data set's items are refused with a ValueError.
"""
from __future__ import annotations

from typing import Sequence

from methods.judges.base import preference_from_scores

GOLD_VERSION = "gold-v2"
W_CONTENT = 0.4


class GoldJudge:
    name = "gold"
    version = GOLD_VERSION

    def details(self, item: dict, output: str) -> dict:
        """{"gate": failed check or None, "content": [0, 1], "constraints": {kind: met}, "score"}."""
        from methods.data.ifeval_synth.content import content_score, gate_failure

        out = output or ""
        met = {c.kind: c.check(out) for c in self._constraints(item)}
        gate = gate_failure(item, out)
        content = 0.0 if gate else content_score(item, out)
        score = 0.0 if gate else W_CONTENT * content + (1 - W_CONTENT) * sum(met.values()) / len(met)
        return {"gate": gate, "content": content, "constraints": met, "score": score}

    def score(self, items: Sequence[dict], outputs: Sequence[str]) -> list[float]:
        _same_length(items, outputs)
        return [self.details(item, out)["score"] for item, out in zip(items, outputs)]

    def compare(self, items: Sequence[dict], outputs_1: Sequence[str], outputs_2: Sequence[str]
                ) -> list[float]:
        _same_length(items, outputs_1, outputs_2)
        s1, s2 = self.score(items, outputs_1), self.score(items, outputs_2)
        return [preference_from_scores(a, b) for a, b in zip(s1, s2)]

    @staticmethod
    def _constraints(item: dict):
        from methods.data.ifeval_synth.constraints import Constraint, constraint_from_dict

        cons = item.get("constraints") if isinstance(item, dict) else None
        if not cons or "instruction" not in item:
            item_id = item.get("id") if isinstance(item, dict) else None
            raise ValueError(
                f"item {item_id!r} has no constraints: the gold judge only works on the ifeval_synth "
                "benchmark (choose another judge for this data set)"
            )
        return [c if isinstance(c, Constraint) else constraint_from_dict(c) for c in cons]


class ConstraintsOnlyJudge(GoldJudge):
    """Gold v1: the fraction of constraints met, no content gate. A constant answer beats the base
    model under it, so it measures nothing; it exists for plumbing tests on random tiny models (whose
    byte soup never passes the v2 gate, so v2 gives them no pairs) and to re-score v1-era outputs."""

    name = "gold_v1"
    version = "gold-v1"

    def details(self, item: dict, output: str) -> dict:
        met = {c.kind: c.check(output or "") for c in self._constraints(item)}
        return {"gate": None, "content": 1.0, "constraints": met, "score": sum(met.values()) / len(met)}


def _same_length(items, *outputs) -> None:
    if any(len(o) != len(items) for o in outputs):
        raise ValueError(f"gold judge: {len(items)} items but {[len(o) for o in outputs]} outputs")
