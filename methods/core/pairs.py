"""Labelled preference pairs from the model's own samples, for data sets that come as prompts.

On the gold-judge benchmark the "human" labels are the gold judge's: the SFT model samples K
responses per prompt, the labeller scores them, and the best and the worst form a pair (prompts
whose samples all score the same give no pair). A sample cut at `max_new_tokens` is no pair member
by default (`data.label_sampling.drop_unfinished: true`): a truncated answer would teach the model
that stopping mid-sentence is preferred, or not, for reasons no judge saw. Data sets that ship pairs (UltraFeedback, HH-RLHF)
provide `preference_pairs()` instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from methods.core.generation import SamplingParams
from methods.core.io import atomic_write_jsonl, read_rows
from methods.data.interface import PreferencePairs


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


def pairs_from_labels(items: Sequence[dict], labelled: Sequence[dict], drop_unfinished: bool = True) -> list[dict]:
    """Best vs worst sample of each labelled row whose item is in `items`; with `drop_unfinished`,
    among the samples that ended with EOS only."""
    by_id = {it["id"]: it for it in items}
    pairs = []
    for row in labelled:
        keep = [k for k, s in enumerate(row["samples"]) if s.get("finished", True) or not drop_unfinished]
        bw = best_worst([row["scores"][k] for k in keep]) if len(keep) >= 2 else None
        if bw is None or row["id"] not in by_id:
            continue
        hi, lo = keep[bw[0]], keep[bw[1]]
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


def unfinished_share(labelled: Sequence[dict]) -> float | None:
    """Share of samples cut at max_new_tokens (no EOS), over all samples of the rows; None if none."""
    flags = [not s.get("finished", True) for row in labelled for s in row["samples"]]
    return sum(flags) / len(flags) if flags else None


def label_sampling_params(data_cfg, seed: int) -> SamplingParams:
    """The labelled pool's sampling settings (`data.label_sampling` less `drop_unfinished`)."""
    opts = {k: v for k, v in dict(data_cfg.label_sampling).items() if k != "drop_unfinished"}
    return SamplingParams(**opts, seed=seed)


PAIR_FIELDS = {"id": str, "prompt": (str, list), "chosen": str, "rejected": str}


def read_pairs(path: str | Path) -> list[dict]:
    return read_rows(path, PAIR_FIELDS)


def gold_labelled_pool(run) -> Path:
    """Samples of the base model on the whole labelled pool, scored by the data set's labeller.

    Cached across runs (keyed by model, data and sampling settings), so `dpo` on the seed labels,
    `dpo` on all labels and every method's seed stage share one set of samples.
    """
    params = label_sampling_params(run.cfg.data, run.data_seed)  # part of the data, like its labels
    items = run.data.labelled()
    key = {
        "model": run.model_source.describe(),
        "items": [it["id"] for it in items],
        "instructions_hash": hash_texts(it["instruction"] for it in items),
        "sampling": vars(params),
        "engine": run.engine_key(),
        "labeller": {"name": run.gold.name, "type": type(run.gold).__qualname__,
                     "version": getattr(run.gold, "version", None)},
    }

    def build(d: Path) -> None:
        samples = sample(run, items, params)
        atomic_write_jsonl(d / "labelled.jsonl", label_samples(items, samples, run.gold))

    return run.cached("labelled_pool", key, build) / "labelled.jsonl"


def labelled_pairs(run, items: Sequence[dict]) -> list[dict]:
    """Human-labelled pairs for `items`: given by the data set, or gold-labelled own samples."""
    if isinstance(run.data, PreferencePairs):
        return run.data.preference_pairs(items)
    drop = run.cfg.data.label_sampling.get("drop_unfinished", True)
    return pairs_from_labels(items, _pool_rows(run, items), drop_unfinished=drop)


def labelled_pool_stats(run, items: Sequence[dict]) -> dict:
    """What making the pairs of `items` saw: {"unfinished_share"} of their samples (own samples only)."""
    if isinstance(run.data, PreferencePairs):
        return {}
    return {"unfinished_share": unfinished_share(_pool_rows(run, items))}


def _pool_rows(run, items: Sequence[dict]) -> list[dict]:
    from methods.core.io import iter_rows

    ids = {it["id"] for it in items}
    return [row for _, row in iter_rows(gold_labelled_pool(run)) if row["id"] in ids]


def hash_texts(texts) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    for t in texts:
        h.update((t if isinstance(t, str) else json.dumps(t, sort_keys=True)).encode())  # chats (HH-RLHF)
        h.update(b"\0")
    return h.hexdigest()[:16]
