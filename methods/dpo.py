"""`method=dpo`: DPO on human-labelled pairs, from the seed labels only or from all labels.

On the gold-judge benchmark the pairs are the base model's own samples labelled by the gold judge
(`methods.core.pairs`); on data sets with pairs (UltraFeedback, HH-RLHF) they are the data's.
`labels=seed` is the "DPO on the seed labels" baseline, `labels=all` the "100% human labels" line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from methods.core.contract import MethodResult, Policy

LABEL_SETS = {"seed": "seed_items", "all": "labelled"}


@dataclass
class DPO:
    name: str = "dpo"
    labels: str = "seed"  # seed | all
    policy_trainer: Any = None  # a conf/trainer/ entry (defaults: /trainer@policy_trainer: dpo)

    def validate(self, run) -> None:
        if self.labels not in LABEL_SETS:
            raise ValueError(f"method.labels={self.labels!r}: choose one of {sorted(LABEL_SETS)}")
        from methods.iterative_dpo import check_dpo_trainer

        check_dpo_trainer(self.policy_trainer, self.name)

    def __call__(self, run) -> MethodResult:
        from methods.core.io import atomic_write_jsonl, read_json
        from methods.core.pairs import labelled_pairs, labelled_pool_stats, read_pairs

        items = getattr(run.data, LABEL_SETS[self.labels])()
        d = run.stage("pairs", lambda d: atomic_write_jsonl(d / "pairs.jsonl", labelled_pairs(run, items)))
        pairs = read_pairs(d / "pairs.jsonl")
        policy = self.policy_trainer.train(run, pairs, "train")
        trained = read_json(Path(policy).parent / "train_metrics.json")
        return MethodResult(Policy(policy), {
            "n_pairs": len(pairs), "n_labelled_prompts": len(items),
            **{k: trained.get(k) for k in ("n_pairs_dropped", "n_pairs_truncated")},
            **labelled_pool_stats(run, items)}, labelled_pairs=len(pairs))
