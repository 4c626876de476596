"""`IFEvalSynth`: deterministic splits of the constraint-following benchmark.

Items are {"id", "family", "instruction" (request + constraint sentences: the full prompt),
"request", "subject", "constraints": [constraint dicts], ...}; the gold judge (methods.judges.gold)
scores them. Two families: `everyday` (task template × subject, with the subject's keywords) and
`list` (list template × category × number of members, gold v2), mixed so that every LIST_SHARE-th
item of each split is a list item while that family lasts.

Splits, all from `seed`:
- `eval()`: `n_eval` prompts on subjects and categories reserved for evaluation (a fifth of each,
  drawn by the seed), so no eval request ever appears in training;
- `labelled()`: `n_labelled` prompts on the other subjects; their gold labels come from the gold judge;
- `seed_items()`: the first ceil(seed_fraction · n_labelled) of them (the pool is already shuffled);
- `unlabelled(i)`: the prompt pool of iteration i (1-based), `n_unlabelled[i-1]` prompts.

Every request (template × subject, or list template × category × size) is used at most once over
all splits, so splits are disjoint by request, id and instruction. Each item's constraints are drawn
from a generator seeded by (seed, request key) alone, and each split reads its own fixed shuffled
order, so growing one split never changes another's items: eval is a prefix of any larger eval, and
the labelled pool and the unlabelled pools read two disjoint halves of each family's training order.
Seeds are strings, which `random.Random` hashes with SHA-512: identical across processes.
"""
from __future__ import annotations

import math
from random import Random

from methods.data.ifeval_synth.lexicon import categories
from methods.data.ifeval_synth.prompts import (
    LIST_SIZES,
    LIST_TEMPLATES,
    SUBJECTS,
    TEMPLATES,
    Subject,
    make_item,
    make_list_item,
)
from methods.data.pools import check_pool_index, check_pool_sizes, is_int, pool_sizes

EVAL_SUBJECT_SHARE = 0.2
MAX_CONSTRAINTS = 4
LIST_SHARE = 0.25  # share of each split drawn from the list family


def _n_eval(n: int) -> int:
    return round(EVAL_SUBJECT_SHARE * n)


def interleave(a: list, b: list, share: float) -> list:
    """All of a and b; position k takes from b when floor((k+1)·share) > floor(k·share), while b lasts.

    Prefix-stable: the first n elements depend only on the first elements of a and b.
    """
    out, ia, ib = [], iter(a), iter(b)
    left_a, left_b = len(a), len(b)
    for k in range(len(a) + len(b)):
        take_b = left_b and (not left_a or math.floor((k + 1) * share) > math.floor(k * share))
        out.append(next(ib) if take_b else next(ia))
        left_b, left_a = (left_b - 1, left_a) if take_b else (left_b, left_a - 1)
    return out


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
    def capacity() -> tuple[int, int, int]:
        """Distinct requests for (eval, the labelled pool, the unlabelled pools together)."""
        n_s, n_c = len(SUBJECTS), len(categories())
        train_e = (n_s - _n_eval(n_s)) * len(TEMPLATES)
        train_l = (n_c - _n_eval(n_c)) * len(LIST_TEMPLATES) * len(LIST_SIZES)
        return (_n_eval(n_s) * len(TEMPLATES) + _n_eval(n_c) * len(LIST_TEMPLATES) * len(LIST_SIZES),
                (train_e + 1) // 2 + (train_l + 1) // 2, train_e // 2 + train_l // 2)

    def validate(self) -> None:
        """Raise ValueError naming the bad setting; nothing is generated."""
        eval_cap, labelled_cap, unlabelled_cap = self.capacity()
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
        if self.n_labelled > labelled_cap:
            raise ValueError(f"data.n_labelled={self.n_labelled}: the labelled pool has {labelled_cap} requests")
        if sum(self.n_unlabelled) > unlabelled_cap:
            raise ValueError(
                f"data.n_unlabelled={list(self.n_unlabelled)}: the unlabelled pools have {unlabelled_cap} "
                "requests in all"
            )
        nc = self.n_constraints
        if len(nc) != 2 or not all(is_int(n) for n in nc) or not 1 <= nc[0] <= nc[1] <= MAX_CONSTRAINTS:
            raise ValueError(
                f"data.n_constraints={list(nc)}: must be [min, max] with 1 <= min <= max <= {MAX_CONSTRAINTS}"
            )

    # ---- splits -------------------------------------------------------------------------------
    def labelled(self) -> list[dict]:
        return self._take("labelled", 0, self.n_labelled)

    def seed_items(self) -> list[dict]:
        return self.labelled()[: math.ceil(self.seed_fraction * self.n_labelled)]

    @property
    def n_iterations(self) -> int:
        return len(self.n_unlabelled)

    def unlabelled(self, i: int) -> list[dict]:
        """Prompt pool of iteration i, 1-based."""
        check_pool_index(i, self.n_unlabelled)
        start = sum(self.n_unlabelled[: i - 1])
        return self._take("unlabelled", start, self.n_unlabelled[i - 1])

    def eval(self) -> list[dict]:
        return self._take("eval", 0, self.n_eval)

    # ---- construction -------------------------------------------------------------------------
    def _rng(self, *parts) -> Random:
        return Random("/".join(["ifeval_synth", str(self.seed), *map(str, parts)]))

    def _order(self, split: str) -> list[tuple]:
        if self._orders is None:
            subjects = list(range(len(SUBJECTS)))  # indices into SUBJECTS, a fixed tuple
            self._rng("subjects").shuffle(subjects)
            cats = list(range(len(categories())))
            self._rng("categories").shuffle(cats)
            ks, kc = _n_eval(len(subjects)), _n_eval(len(cats))
            orders = {}
            for name, subs, cs in (("eval", subjects[:ks], cats[:kc]), ("train", subjects[ks:], cats[kc:])):
                everyday = [("e", t, s) for s in sorted(subs) for t in range(len(TEMPLATES))]
                self._rng("order", name).shuffle(everyday)
                lists = [("l", t, c, n) for c in sorted(cs) for t in range(len(LIST_TEMPLATES)) for n in LIST_SIZES]
                self._rng("list-order", name).shuffle(lists)
                if name == "eval":
                    orders["eval"] = interleave(everyday, lists, LIST_SHARE)
                else:  # two disjoint halves of each family: the labelled pool and the unlabelled pools
                    orders["labelled"] = interleave(everyday[0::2], lists[0::2], LIST_SHARE)
                    orders["unlabelled"] = interleave(everyday[1::2], lists[1::2], LIST_SHARE)
            self._orders = orders
        return self._orders[split]

    def _item(self, key: tuple) -> dict:
        if key not in self._items:
            if key[0] == "e":
                _, t, s = key
                subject: Subject = SUBJECTS[s]
                item = make_item(self._rng("item", t, s), TEMPLATES[t], subject, self.n_constraints,
                                 f"ifs{self.seed}-t{t:02d}-s{s:02d}")
            else:
                _, t, c, n = key
                item = make_list_item(self._rng("list-item", t, c, n), LIST_TEMPLATES[t], categories()[c], n,
                                      self.n_constraints, f"ifs{self.seed}-l{t}-c{c:02d}-n{n}")
            self._items[key] = item
        return self._items[key]

    def _take(self, split: str, start: int, n: int) -> list[dict]:
        # copies, so a caller that edits an item cannot change what the next call returns
        return [
            {**it, "constraints": [dict(c) for c in it["constraints"]]}
            for it in (self._item(key) for key in self._order(split)[start : start + n])
        ]
