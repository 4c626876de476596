"""`IFEvalSynth`: deterministic splits of the constraint-following benchmark.

Items are {"id", "instruction" (request + constraint sentences: the full prompt), "request",
"subject", "constraints": [constraint dicts]}; the gold judge (methods.judges.gold) scores them.

Splits, all from `seed`:
- `eval()`: `n_eval` prompts on subjects reserved for evaluation (a fifth of all subjects, drawn by
  the seed), so no eval request ever appears in training;
- `labelled()`: `n_labelled` prompts on the other subjects; their gold labels come from the gold judge;
- `seed_items()`: the first ceil(seed_fraction · n_labelled) of them (the pool is already shuffled);
- `unlabelled(i)`: the prompt pool of iteration i (1-based), `n_unlabelled[i-1]` prompts.

Every (template, subject) request is used at most once over all splits, so splits are disjoint by
request, id and instruction. Each item's constraints are drawn from a generator seeded by
(seed, template, subject) alone, and each split reads its own fixed shuffled order, so growing one
split never changes another's items: eval is a prefix of any larger eval, the labelled pool is
read from the front of the training order and the unlabelled pools from its back.
Seeds are strings, which `random.Random` hashes with SHA-512: identical across processes.
"""
from __future__ import annotations

import math
from random import Random

from methods.data.ifeval_synth.prompts import SUBJECTS, TEMPLATES, Subject, make_item
from methods.data.pools import check_pool_index, check_pool_sizes, is_int, pool_sizes

EVAL_SUBJECT_SHARE = 0.2
MAX_CONSTRAINTS = 4


class IFEvalSynth:
    """The embedded default's benchmark; cheap to construct (validation only, items built on first use)."""

    name = "ifeval_synth"

    def __init__(self, seed: int = 0, n_labelled: int = 512, seed_fraction: float = 0.1,
                 n_unlabelled=(256, 256, 256), n_eval: int = 200, n_constraints=(1, 3)):
        self.seed = seed
        self.n_labelled = n_labelled
        self.seed_fraction = seed_fraction
        self.n_unlabelled = pool_sizes(n_unlabelled)
        self.n_eval = n_eval
        self.n_constraints = tuple(n_constraints)
        self.validate()
        self._items: dict[tuple[int, int], dict] = {}
        self._orders: dict[str, list[tuple[int, int]]] | None = None

    # ---- checks -------------------------------------------------------------------------------
    @staticmethod
    def capacity() -> tuple[int, int]:
        """(number of distinct eval requests, number of distinct training requests)."""
        n_eval_subjects = round(EVAL_SUBJECT_SHARE * len(SUBJECTS))
        return n_eval_subjects * len(TEMPLATES), (len(SUBJECTS) - n_eval_subjects) * len(TEMPLATES)

    def validate(self) -> None:
        """Raise ValueError naming the bad setting; nothing is generated."""
        eval_cap, train_cap = self.capacity()
        if not is_int(self.seed):
            raise ValueError(f"data.seed={self.seed!r}: must be an integer")
        if not isinstance(self.seed_fraction, (int, float)) or not 0 < self.seed_fraction <= 1:
            raise ValueError(
                f"data.seed_fraction={self.seed_fraction!r}: must be in (0, 1] (1.0 = all the labelled pool)"
            )
        if not is_int(self.n_labelled) or self.n_labelled < 1:
            raise ValueError(f"data.n_labelled={self.n_labelled!r}: must be an integer >= 1")
        check_pool_sizes(self.n_unlabelled)
        if not is_int(self.n_eval) or self.n_eval < 1:
            raise ValueError(f"data.n_eval={self.n_eval!r}: must be an integer >= 1")
        if self.n_eval > eval_cap:
            raise ValueError(f"data.n_eval={self.n_eval}: the eval subjects give only {eval_cap} requests")
        n_train = self.n_labelled + sum(self.n_unlabelled)
        if n_train > train_cap:
            raise ValueError(
                f"data.n_labelled + sum(data.n_unlabelled) = {n_train}: the training subjects give only "
                f"{train_cap} distinct requests"
            )
        nc = self.n_constraints
        if len(nc) != 2 or not all(is_int(n) for n in nc) or not 1 <= nc[0] <= nc[1] <= MAX_CONSTRAINTS:
            raise ValueError(
                f"data.n_constraints={list(nc)}: must be [min, max] with 1 <= min <= max <= {MAX_CONSTRAINTS}"
            )

    # ---- splits -------------------------------------------------------------------------------
    def labelled(self) -> list[dict]:
        return self._take("train", 0, self.n_labelled)

    def seed_items(self) -> list[dict]:
        return self.labelled()[: math.ceil(self.seed_fraction * self.n_labelled)]

    @property
    def n_iterations(self) -> int:
        return len(self.n_unlabelled)

    def unlabelled(self, i: int) -> list[dict]:
        """Prompt pool of iteration i, 1-based."""
        check_pool_index(i, self.n_unlabelled)
        start = sum(self.n_unlabelled[: i - 1])
        return self._take("train_back", start, self.n_unlabelled[i - 1])

    def eval(self) -> list[dict]:
        return self._take("eval", 0, self.n_eval)

    # ---- construction -------------------------------------------------------------------------
    def _rng(self, *parts) -> Random:
        return Random("/".join(["ifeval_synth", str(self.seed), *map(str, parts)]))

    def _order(self, split: str) -> list[tuple[int, int]]:
        if self._orders is None:
            subjects = list(range(len(SUBJECTS)))  # indices into SUBJECTS, a fixed tuple
            self._rng("subjects").shuffle(subjects)
            k = round(EVAL_SUBJECT_SHARE * len(SUBJECTS))
            orders = {}
            for name, subs in (("eval", sorted(subjects[:k])), ("train", sorted(subjects[k:]))):
                pairs = [(t, s) for s in subs for t in range(len(TEMPLATES))]
                self._rng("order", name).shuffle(pairs)
                orders[name] = pairs
            orders["train_back"] = orders["train"][::-1]
            self._orders = orders
        return self._orders[split]

    def _item(self, t: int, s: int) -> dict:
        if (t, s) not in self._items:
            subject: Subject = SUBJECTS[s]
            item_id = f"ifs{self.seed}-t{t:02d}-s{s:02d}"
            rng = self._rng("item", t, s)
            self._items[(t, s)] = make_item(rng, TEMPLATES[t], subject, self.n_constraints, item_id)
        return self._items[(t, s)]

    def _take(self, split: str, start: int, n: int) -> list[dict]:
        # copies, so a caller that edits an item cannot change what the next call returns
        return [
            {**it, "constraints": [dict(c) for c in it["constraints"]]}
            for it in (self._item(t, s) for t, s in self._order(split)[start : start + n])
        ]
