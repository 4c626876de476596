"""The gold judge of `ifeval_synth`: a response's score is the fraction of its prompt's constraints met.

Implements both `PointwiseJudge` (`score`) and `PairwiseJudge` (`compare`: 1 = first output better,
2 = second better, 1.5 = tie, from the two scores). Items must carry `constraints` (constraint
dicts, as `IFEvalSynth` makes them); any other data set's items are refused with a ValueError.
"""
from __future__ import annotations

from typing import Sequence

from methods.judges.base import preference_from_scores


class GoldJudge:
    name = "gold"

    def details(self, item: dict, output: str) -> dict[str, bool]:
        """kind -> met, for logging (a prompt never has two constraints of one kind)."""
        return {c.kind: c.check(output or "") for c in self._constraints(item)}

    def score(self, items: Sequence[dict], outputs: Sequence[str]) -> list[float]:
        _same_length(items, outputs)
        scores = []
        for item, out in zip(items, outputs):
            met = [c.check(out or "") for c in self._constraints(item)]
            scores.append(sum(met) / len(met))
        return scores

    def compare(self, items: Sequence[dict], outputs_1: Sequence[str], outputs_2: Sequence[str]
                ) -> list[float]:
        _same_length(items, outputs_1, outputs_2)
        s1, s2 = self.score(items, outputs_1), self.score(items, outputs_2)
        return [preference_from_scores(a, b) for a, b in zip(s1, s2)]

    @staticmethod
    def _constraints(item: dict):
        from methods.data.ifeval_synth.constraints import Constraint, constraint_from_dict

        cons = item.get("constraints") if isinstance(item, dict) else None
        if not cons:
            item_id = item.get("id") if isinstance(item, dict) else None
            raise ValueError(
                f"item {item_id!r} has no constraints: the gold judge only works on the ifeval_synth "
                "benchmark (choose another judge for this data set)"
            )
        return [c if isinstance(c, Constraint) else constraint_from_dict(c) for c in cons]


def _same_length(items, *outputs) -> None:
    if any(len(o) != len(items) for o in outputs):
        raise ValueError(f"gold judge: {len(items)} items but {[len(o) for o in outputs]} outputs")
