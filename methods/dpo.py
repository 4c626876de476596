"""`method=dpo`: DPO on human-labelled pairs, from the seed labels only or from all labels.

On the gold-judge benchmark the pairs are the base model's own samples labelled by the gold judge
(`methods.core.pairs`); on data sets with pairs (UltraFeedback, HH-RLHF) they are the data's.
`labels=seed` is the "DPO on the seed labels" baseline, `labels=all` the "100% human labels" line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from methods.core.run import MethodResult

LABEL_SETS = {"seed": "seed_items", "all": "labelled"}


@dataclass
class DPO:
    name: str = "dpo"
    labels: str = "seed"

    def validate(self, run) -> None:
        if self.labels not in LABEL_SETS:
            raise ValueError(f"method.labels={self.labels!r}: choose one of {sorted(LABEL_SETS)}")

    def __call__(self, run) -> MethodResult:
        from methods.core.dpo import train_dpo
        from methods.core.io import atomic_write_jsonl, read_json, read_rows
        from methods.core.pairs import PAIR_FIELDS, labelled_pairs, labelled_pool_stats

        items = getattr(run.data, LABEL_SETS[self.labels])()
        d = run.stage("pairs", lambda d: atomic_write_jsonl(d / "pairs.jsonl", labelled_pairs(run, items)))
        pairs = read_rows(d / "pairs.jsonl", PAIR_FIELDS)
        policy = train_dpo(run, pairs)
        trained = read_json(Path(policy).parent / "train_metrics.json")
        return MethodResult(policy, {"n_pairs": len(pairs), "n_labelled_prompts": len(items),
                                     **{k: trained.get(k) for k in ("n_pairs_dropped", "n_pairs_truncated")},
                                     **labelled_pool_stats(run, items)})
