"""SPA's direct preference judgment: the previous policy labels its own samples.

Each of the K samples y_k of a prompt x gets a score; the highest and the lowest form the pair
(`methods.core.pairs.best_worst`: first occurrence wins among equal scores; a prompt whose samples
all score the same gives no pair). The score depends on `reference`:
  - "sft":      r = β·[log π_{i-1}(y|x) − log π_SFT(y|x)]  (the paper's default);
  - "previous": r = β·[log π_{i-1}(y|x) − log π_{i-2}(y|x)], π_{i-2} = the DPO reference of π_{i-1}
                (the SFT model for iteration 1, so it equals "sft" there);
  - "none":     r = β·log π_{i-1}(y|x);
  - "judge" / "labeller": the shared judge `run.judge` / the gold judge `run.labeller`, pointwise
                (`score`), or pairwise (`compare`, K = 2 only) when the judge cannot score.
Log-probs are sums over the response tokens (end-of-turn included), as DPO's own.
"""
from __future__ import annotations

from typing import Sequence

IMPLICIT = ("sft", "previous", "none")
EXTERNAL = ("judge", "labeller")
REFERENCES = IMPLICIT + EXTERNAL


def logprobs(run, model_path: str, prompts, responses, batch_size: int, max_length: int | None):
    """`LogProbs` of every (prompt, response) under the model at `model_path` (loaded, then freed)."""
    import torch

    from methods.core.scoring import sequence_logprobs

    run.release()  # the generation engine's copy is not needed while scoring
    model, tok = run.model_source.load(model_path)  # inference: on the GPU when there is one
    try:
        return sequence_logprobs(model, tok, prompts, responses, batch_size=batch_size, max_length=max_length)
    finally:
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def external_scores(judge, items: Sequence[dict], samples: Sequence[list[dict]]) -> list[float]:
    """Flat scores from a pointwise judge, or from a pairwise judge's preference when K = 2."""
    flat_items = [it for it, ss in zip(items, samples) for _ in ss]
    flat = [s["text"] for ss in samples for s in ss]
    if hasattr(judge, "score"):
        return list(judge.score(flat_items, flat))
    if any(len(ss) != 2 for ss in samples):
        raise ValueError(f"judge {judge.name!r} only compares pairs: SPA's external judge then needs K = 2")
    prefs = judge.compare(items, [ss[0]["text"] for ss in samples], [ss[1]["text"] for ss in samples])
    # AlpacaEval encoding: 1 = first better, 2 = second better, 1.5 = tie -> scores (2 − p, p − 1)
    return [x for p in prefs for x in (2.0 - p, p - 1.0)]


def regroup(flat: Sequence[float], samples: Sequence[list]) -> list[list[float]]:
    it = iter(flat)
    return [[next(it) for _ in ss] for ss in samples]


def gold_agreement(pairs: Sequence[dict], labeller, items_by_id: dict) -> dict:
    """Self-label accuracy: share of pairs whose chosen scores above the rejected under the gold
    labeller, ties excluded; with the tie share (over all pairs). Adds `gold_chosen`/`gold_rejected`."""
    if labeller is None or not hasattr(labeller, "score") or not pairs:
        return {"self_label_accuracy": None, "gold_tie_share": None, "n_gold_decided": 0}
    its = [items_by_id[p["id"]] for p in pairs]
    sc = labeller.score(its, [p["chosen"] for p in pairs])
    sr = labeller.score(its, [p["rejected"] for p in pairs])
    agree = disagree = 0
    for p, a, b in zip(pairs, sc, sr):
        p["gold_chosen"], p["gold_rejected"] = a, b
        agree += a > b
        disagree += a < b
    decided = agree + disagree
    return {
        "self_label_accuracy": agree / decided if decided else None,
        "gold_tie_share": 1 - decided / len(pairs),
        "n_gold_decided": decided,
    }
