"""The gold judge of `ifeval_synth`: a response's score is the fraction of its constraints met."""
from __future__ import annotations

from typing import Sequence

from methods.judges.base import preference_from_scores


class GoldJudge:
    name = "gold"

    def details(self, item: dict, output: str) -> dict[str, bool]:
        from methods.data.ifeval_synth.constraints import Constraint

        if "constraints" not in item:
            raise ValueError(f"item {item.get('id')!r} has no constraints: the gold judge only works on ifeval_synth")
        return {c["kind"]: Constraint.from_dict(c).check(output) for c in item["constraints"]}

    def score(self, items: Sequence[dict], outputs: Sequence[str]) -> list[float]:
        res = []
        for it, out in zip(items, outputs, strict=True):
            d = self.details(it, out)
            res.append(sum(d.values()) / len(d) if d else 0.0)
        return res

    def compare(self, items: Sequence[dict], outputs_1: Sequence[str], outputs_2: Sequence[str]) -> list[float]:
        return [preference_from_scores(a, b) for a, b in zip(self.score(items, outputs_1), self.score(items, outputs_2))]
