"""The `ifeval_synth` task: deterministic splits of constraint-following prompts.

Items: {"id", "instruction" (request + constraint sentences: the prompt), "request", "subject",
"constraints": [constraint dicts]}. Splits: a labelled pool (its gold labels come from the gold
judge), the seed (a prefix of that pool), unlabelled prompt pools per iteration, and an eval set
whose subjects never occur in training (so no eval request appears in any training split).
"""
from __future__ import annotations

import math
from random import Random

from methods.data.ifeval_synth.constraints import REGISTRY, compatible, sample
from methods.data.ifeval_synth.prompts import SUBJECTS, TEMPLATES

N_EVAL_SUBJECTS = 40
TRAIN_SUBJECTS = SUBJECTS[:-N_EVAL_SUBJECTS]
EVAL_SUBJECTS = SUBJECTS[-N_EVAL_SUBJECTS:]


def make_item(rng: Random, subject: str, template: str, n_constraints: tuple[int, int], uid: str) -> dict:
    k = rng.randint(*n_constraints)
    kinds: list[str] = []
    for kind in rng.sample(sorted(REGISTRY), len(REGISTRY)):
        if len(kinds) == k:
            break
        if compatible(kind, kinds):
            kinds.append(kind)
    cons = [sample(kind, rng) for kind in kinds]
    request = template.format(s=subject)
    return {
        "id": uid,
        "instruction": " ".join([request, *(c.describe() for c in cons)]),
        "request": request,
        "subject": subject,
        "constraints": [c.to_dict() for c in cons],
    }


def _draw(rng: Random, subjects: list[str], n: int, n_constraints, prefix: str, seen: set[str]) -> list[dict]:
    combos = [(s, t) for s in subjects for t in TEMPLATES]
    rng.shuffle(combos)
    items = []
    for s, t in combos:
        if len(items) == n:
            break
        item = make_item(rng, s, t, n_constraints, f"{prefix}-{len(items):05d}")
        if item["instruction"] in seen:
            continue
        seen.add(item["instruction"])
        items.append(item)
    if len(items) < n:
        raise ValueError(f"{prefix}: asked for {n} prompts but only {len(items)} distinct ones exist")
    return items


class IFEvalSynth:
    """Constraint-following prompts with a gold judge; all splits built from `seed` in milliseconds."""

    def __init__(self, seed: int = 0, n_labelled: int = 512, seed_fraction: float = 0.1,
                 n_unlabelled=(256, 256, 256), n_eval: int = 200, n_constraints=(1, 3)):
        self.seed, self.n_labelled, self.seed_fraction = seed, n_labelled, seed_fraction
        self.n_unlabelled = tuple(n_unlabelled)
        self.n_eval, self.n_constraints = n_eval, tuple(n_constraints)
        self.validate()
        seen: set[str] = set()
        # eval first, from its own subjects and its own generator: training sizes never change it
        self._eval = _draw(Random(f"eval-{seed}"), EVAL_SUBJECTS, n_eval, self.n_constraints, "eval", seen)
        rng = Random(f"train-{seed}")
        total = n_labelled + sum(self.n_unlabelled)
        pool = _draw(rng, TRAIN_SUBJECTS, total, self.n_constraints, "train", seen)
        self._labelled = pool[:n_labelled]
        self._unlabelled, start = [], n_labelled
        for n in self.n_unlabelled:
            self._unlabelled.append(pool[start : start + n])
            start += n

    def validate(self) -> None:
        if not (0 < self.seed_fraction <= 1):
            raise ValueError(f"data.seed_fraction={self.seed_fraction}: must be in (0, 1]")
        if self.n_labelled < 1 or self.n_eval < 1 or any(n < 0 for n in self.n_unlabelled):
            raise ValueError(f"data sizes must be positive: n_labelled={self.n_labelled}, n_eval={self.n_eval}, "
                             f"n_unlabelled={list(self.n_unlabelled)}")
        lo, hi = self.n_constraints
        if not (1 <= lo <= hi <= 3):
            raise ValueError(f"data.n_constraints={list(self.n_constraints)}: need 1 ≤ min ≤ max ≤ 3")
        if self.n_eval > len(EVAL_SUBJECTS) * len(TEMPLATES):
            raise ValueError(f"data.n_eval={self.n_eval}: at most {len(EVAL_SUBJECTS) * len(TEMPLATES)} eval prompts exist")
        if self.n_labelled + sum(self.n_unlabelled) > len(TRAIN_SUBJECTS) * len(TEMPLATES):
            raise ValueError(f"data: at most {len(TRAIN_SUBJECTS) * len(TEMPLATES)} training prompts exist")

    def labelled(self) -> list[dict]:
        return list(self._labelled)

    def seed_items(self) -> list[dict]:
        return self._labelled[: math.ceil(self.seed_fraction * self.n_labelled)]

    def unlabelled(self, i: int) -> list[dict]:
        if not 1 <= i <= len(self._unlabelled):
            raise ValueError(f"unlabelled pool {i}: data.n_unlabelled has {len(self._unlabelled)} pools")
        return list(self._unlabelled[i - 1])

    def eval(self) -> list[dict]:
        return list(self._eval)
