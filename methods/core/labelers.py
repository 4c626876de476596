"""Labelers: who labels a method's own samples (`conf/labeler/`). One interface:

    labeler.score(run, items, samples, context) -> one score per sample (a list per item)

The best and the worst sample of an item then form its pair (`methods.core.pairs.pairs_from_labels`).
- `ImplicitReward` (`labeler=implicit`): r = β·[log π(y|x) − log π_ref(y|x)] of the policy that drew
  the samples (SPA's direct preference judgment); `reference` picks π_ref:
    sft       the SFT model (SPA's default);
    previous  the DPO reference of the sampling policy, i.e. the policy before it (π_{i-2} for
              samples of π_{i-1}). For iteration 1 that policy's reference is the SFT model, so
              `previous` and `sft` label iteration 1 identically by definition; they differ from
              iteration 2 on (Table 7 of SPA compares them over 3 iterations);
    none      no reference: r = β·log π(y|x).
- `JudgeLabeler` (`labeler=judge` with the local LLM judge, `labeler=reward_model`): a judge's
  pointwise `score`, or, for a pairwise-only judge, its preference between the two samples (K = 2).
- `GoldLabeler` (`labeler=gold`): the data set's gold labeller (the benchmark's "human" labels), an
  oracle upper bound on label quality.
Log-probs are sums over the response tokens (end-of-turn included), as DPO's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from methods.judges.base import Scorer


@dataclass
class LabelContext:
    policy: str  # the model directory that drew the samples
    reference: str | None = None  # that policy's DPO reference (None: it was not trained by DPO)
    beta: float = 0.1  # the policy trainer's β (the implicit reward's scale)
    max_length: int | None = None  # the policy trainer's max_length (scoring truncates alike)


def _flat(items, samples):
    return [it for it, ss in zip(items, samples) for _ in ss], [s["text"] for ss in samples for s in ss]


def regroup(flat: Sequence[float], samples: Sequence[list]) -> list[list[float]]:
    it = iter(flat)
    return [[next(it) for _ in ss] for ss in samples]


IMPLICIT_REFERENCES = ("sft", "previous", "none")


@dataclass
class ImplicitReward:
    name: str = "implicit"
    human_labels: ClassVar[bool] = False
    reference: str = "sft"  # sft | previous | none
    beta: float | None = None  # null = the policy trainer's β (it only scales: the order is kept)
    batch_size: int = 16

    def validate(self, run, n_samples: int) -> None:
        if self.reference not in IMPLICIT_REFERENCES:
            raise ValueError(f"labeler.reference={self.reference!r}: choose one of {list(IMPLICIT_REFERENCES)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"labeler.batch_size={self.batch_size!r}: an integer >= 1")

    def describe(self) -> str:
        return f"implicit:{self.reference}"

    def score(self, run, items, samples, context: LabelContext) -> list[list[float]]:
        from methods.core.scoring import implicit_reward

        flat_items, responses = _flat(items, samples)
        prompts = [it["instruction"] for it in flat_items]
        kw = dict(batch_size=self.batch_size, max_length=context.max_length)
        pol = logprobs(run, context.policy, prompts, responses, **kw)
        ref_path = {"sft": run.base_model_path, "previous": context.reference or run.base_model_path,
                    "none": None}[self.reference]
        ref = logprobs(run, ref_path, prompts, responses, **kw) if ref_path else None
        return regroup(implicit_reward(pol, ref, self.beta if self.beta is not None else context.beta), samples)


@dataclass
class JudgeLabeler:
    judge: Any  # a judge (conf/judge/): pointwise `score`, or pairwise `compare` only (then K = 2)
    name: str = "judge"
    human_labels: ClassVar[bool] = False

    def validate(self, run, n_samples: int) -> None:
        if hasattr(self.judge, "validate"):
            self.judge.validate()
        if not isinstance(self.judge, Scorer) and n_samples != 2:
            raise ValueError(f"labeler={self.name}: judge {self.judge.name!r} only compares pairs, so the method "
                             f"must draw K = 2 samples per prompt (got {n_samples})")

    def describe(self) -> str:
        return f"{self.name}:{self.judge.name}"

    def score(self, run, items, samples, context: LabelContext) -> list[list[float]]:
        return regroup(judge_scores(self.judge, items, samples), samples)


@dataclass
class RewardModelLabeler(JudgeLabeler):
    """`labeler=reward_model`: a judge that is a sequence-classification reward model (pointwise)."""

    name: str = "reward_model"


@dataclass
class GoldLabeler:
    name: str = "gold"
    # its labels are the data's human labels (they count in the label budget), not the model's own
    human_labels: ClassVar[bool] = True

    def validate(self, run, n_samples: int) -> None:
        if run.gold is None:
            raise ValueError(f"labeler=gold: data={run.cfg.data.name} has no gold labeller (data.labeller)")

    def describe(self) -> str:
        return "gold"

    def score(self, run, items, samples, context: LabelContext) -> list[list[float]]:
        return regroup(judge_scores(run.gold, items, samples), samples)


def judge_scores(judge, items: Sequence[dict], samples: Sequence[list[dict]]) -> list[float]:
    """Flat scores from a pointwise judge, or from a pairwise judge's preference when K = 2."""
    flat_items, flat = _flat(items, samples)
    if isinstance(judge, Scorer):
        return list(judge.score(flat_items, flat))
    if any(len(ss) != 2 for ss in samples):
        raise ValueError(f"judge {judge.name!r} only compares pairs: labelling with it needs K = 2")
    prefs = judge.compare(items, [ss[0]["text"] for ss in samples], [ss[1]["text"] for ss in samples])
    # AlpacaEval encoding: 1 = first better, 2 = second better, 1.5 = tie -> scores (2 − p, p − 1)
    return [x for p in prefs for x in (2.0 - p, p - 1.0)]


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


def gold_agreement(pairs: Sequence[dict], gold, items_by_id: dict) -> dict:
    """Self-label accuracy: share of pairs whose chosen scores above the rejected under the gold
    labeller, ties excluded; with the tie share (over all pairs). Adds `gold_chosen`/`gold_rejected`."""
    if gold is None or not isinstance(gold, Scorer) or not pairs:
        return {"self_label_accuracy": None, "gold_tie_share": None, "n_gold_decided": 0}
    its = [items_by_id[p["id"]] for p in pairs]
    sc = gold.score(its, [p["chosen"] for p in pairs])
    sr = gold.score(its, [p["rejected"] for p in pairs])
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
