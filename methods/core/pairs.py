"""Labelled preference pairs from the model's own samples, for data sets that come as prompts.

On the gold-judge benchmark the "human" labels are the gold judge's: the SFT model samples K
responses per prompt, the labeller scores them, and the best and the worst form a pair (prompts
whose samples all score the same give no pair). Data sets that ship pairs (UltraFeedback, HH-RLHF)
provide `preference_pairs()` instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from methods.core.generation import SamplingParams
from methods.core.io import atomic_write_jsonl, read_rows


def sample(run, items: Sequence[dict], params: SamplingParams, model_path: str | None = None) -> list[list[dict]]:
    """K completions per item, as dicts {text, n_tokens, finished}."""
    engine = run.engine(model_path)
    outs = engine.generate([it["instruction"] for it in items], params)
    return [[{"text": c.text, "n_tokens": c.n_tokens, "finished": c.finished} for c in cs] for cs in outs]


def best_worst(scores: Sequence[float]) -> tuple[int, int] | None:
    """Indices of the highest and the lowest score (first occurrence); None when all are equal."""
    hi = max(range(len(scores)), key=lambda k: (scores[k], -k))
    lo = min(range(len(scores)), key=lambda k: (scores[k], k))
    return None if scores[hi] == scores[lo] else (hi, lo)


def label_samples(items: Sequence[dict], samples: Sequence[list[dict]], judge) -> list[dict]:
    """Score every sample with a pointwise judge; one row per item with its samples and scores."""
    flat_items = [it for it, ss in zip(items, samples) for _ in ss]
    flat = [s["text"] for ss in samples for s in ss]
    scores = iter(judge.score(flat_items, flat))
    return [{"id": it["id"], "samples": ss, "scores": [next(scores) for _ in ss]} for it, ss in zip(items, samples)]


def pairs_from_labels(items: Sequence[dict], labelled: Sequence[dict]) -> list[dict]:
    by_id = {it["id"]: it for it in items}
    pairs = []
    for row in labelled:
        bw = best_worst(row["scores"])
        if bw is None or row["id"] not in by_id:
            continue
        hi, lo = bw
        pairs.append(
            {
                "id": row["id"],
                "prompt": by_id[row["id"]]["instruction"],
                "chosen": row["samples"][hi]["text"],
                "rejected": row["samples"][lo]["text"],
                "chosen_score": row["scores"][hi],
                "rejected_score": row["scores"][lo],
            }
        )
    return pairs


PAIR_FIELDS = {"id": str, "prompt": (str, list), "chosen": str, "rejected": str}


def read_pairs(path: str | Path) -> list[dict]:
    return read_rows(path, PAIR_FIELDS)


def gold_labelled_pool(run) -> Path:
    """Samples of the base model on the whole labelled pool, scored by the data set's labeller.

    Cached across runs (keyed by model, data and sampling settings), so `dpo` on the seed labels,
    `dpo` on all labels and every method's seed stage share one set of samples.
    """
    data_cfg = run.cfg.data
    params = SamplingParams(**data_cfg.label_sampling, seed=run.cfg.seed)
    items = run.data.labelled()
    key = {
        "model": run.model_source.describe(),
        "items": [it["id"] for it in items],
        "instructions_hash": hash_texts(it["instruction"] for it in items),
        "sampling": vars(params),
        "engine": run.engine_key(),
        "labeller": {"name": run.labeller.name, "type": type(run.labeller).__qualname__},
    }

    def build(d: Path) -> None:
        samples = sample(run, items, params)
        atomic_write_jsonl(d / "labelled.jsonl", label_samples(items, samples, run.labeller))

    return run.cached("labelled_pool", key, build) / "labelled.jsonl"


def labelled_pairs(run, items: Sequence[dict]) -> list[dict]:
    """Human-labelled pairs for `items`: given by the data set, or gold-labelled own samples."""
    if hasattr(run.data, "preference_pairs"):
        return run.data.preference_pairs(items)
    from methods.core.io import iter_rows

    labelled = [row for _, row in iter_rows(gold_labelled_pool(run))]
    return pairs_from_labels(items, labelled)


def hash_texts(texts) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    for t in texts:
        h.update((t if isinstance(t, str) else json.dumps(t, sort_keys=True)).encode())  # chats (HH-RLHF)
        h.update(b"\0")
    return h.hexdigest()[:16]
