"""SPA / Selfie (`method=spa`): the self-labelling, the self-refined loss and the iteration driver.

Hand values are worked out in each docstring. Threshold conventions under test (`method.threshold_convention`):
"current" = linear interpolation between the two nearest ranks (torch.quantile's default, numpy.percentile's
default "linear") of the window with the batch's margins in it; "released" = the authors' code: earlier steps'
batch-mean margins only, 0 until the window is full, mean of the sorted window's entries k, k+1.
"""
from __future__ import annotations

import json
import logging
import math
from collections import defaultdict

import pytest
import torch


# ---- self-labelling ---------------------------------------------------------------------------------
class _FakeRun:
    """What `labels.logprobs` needs of a run: a model source and `release()`."""

    def __init__(self, src):
        self.model_source = src

    def release(self):
        pass


def _direct_logprob(model, tok, prompt, response):
    """log π(y|x) from one full forward: Σ_t log softmax(logits[t−1])[token t] over the response tokens."""
    from methods.core.scoring import encode_pairs

    (ids, p), = encode_pairs(tok, [prompt], [response])
    with torch.no_grad():
        lp = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float().log_softmax(-1)
    return sum(lp[t - 1, ids[t]].item() for t in range(p, len(ids)))


def test_implicit_reward_preference_matches_direct_forward(tiny, tmp_path):
    """r_k = β·(log π(y_k|x) − log π_SFT(y_k|x)) with π a perturbed copy of the tiny model (saved to disk)
    and π_SFT the tiny model. The scores from `logprobs` equal the hand sums from a direct forward,
    the pair is (argmax r, argmin r), and p(chosen ≻ rejected) = σ(r_c − r_r) > 1/2."""
    from methods.core.pairs import best_worst
    from methods.core.scoring import implicit_reward
    from methods.core.labelers import logprobs

    src, base, tok = tiny
    policy, _ = src.load(for_generation=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    policy.save_pretrained(tmp_path / "pi")
    tok.save_pretrained(tmp_path / "pi")
    prompt = "Write a haiku about tea."
    responses = ["green leaves", "boiling water, patience", "x"]
    run = _FakeRun(src)
    pol = logprobs(run, str(tmp_path / "pi"), [prompt] * 3, responses, batch_size=2, max_length=None)
    ref = logprobs(run, src.path(), [prompt] * 3, responses, batch_size=2, max_length=None)
    hand_pol = [_direct_logprob(policy, tok, prompt, r) for r in responses]
    hand_ref = [_direct_logprob(base, tok, prompt, r) for r in responses]
    assert pol.sum == pytest.approx(hand_pol, abs=1e-3)
    assert ref.sum == pytest.approx(hand_ref, abs=1e-3)
    beta = 0.1
    r = implicit_reward(pol, ref, beta)
    hand_r = [beta * (a - b) for a, b in zip(hand_pol, hand_ref)]
    assert r == pytest.approx(hand_r, abs=1e-4)
    hi, lo = best_worst(r)
    assert hi == max(range(3), key=lambda k: hand_r[k]) and lo == min(range(3), key=lambda k: hand_r[k])
    assert 1 / (1 + math.exp(-(r[hi] - r[lo]))) > 0.5
    assert implicit_reward(pol, None, beta) == pytest.approx([beta * a for a in hand_pol], abs=1e-4)  # "none"


def test_best_worst_for_k_above_two_with_ties():
    """Scores [0.1, 0.5, 0.5, −0.2]: chosen = index 1 (first of the tied best), rejected = index 3.
    [0.3, 0.3, 0.3]: all tie -> no pair. [0.2, 0.2, 0.7, 0.2]: chosen 2, rejected 0 (first of the tied worst)."""
    from methods.core.pairs import pairs_from_labels
    from methods.core.labelers import regroup

    items = [{"id": i, "instruction": f"q{i}"} for i in "abc"]
    samples = [[{"text": f"{i}{k}"} for k in range(n)] for i, n in zip("abc", (4, 3, 4))]
    flat = [0.1, 0.5, 0.5, -0.2, 0.3, 0.3, 0.3, 0.2, 0.2, 0.7, 0.2]
    scores = regroup(flat, samples)
    assert scores == [[0.1, 0.5, 0.5, -0.2], [0.3, 0.3, 0.3], [0.2, 0.2, 0.7, 0.2]]
    labelled = [{"id": it["id"], "samples": ss, "scores": sc} for it, ss, sc in zip(items, samples, scores)]
    pairs = pairs_from_labels(items, labelled)
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [("a", "a1", "a3"), ("c", "c2", "c0")]


def test_external_pairwise_judge_scores():
    """A pairwise judge's preference p ∈ {1, 1.5, 2} becomes scores (2 − p, p − 1): 1 -> first chosen,
    1.5 -> tie (no pair), 2 -> second chosen."""
    from methods.core.labelers import judge_scores as external_scores

    class Pairwise:
        name = "pw"

        def compare(self, items, a, b):
            return [1.0, 1.5, 2.0]

    samples = [[{"text": "a"}, {"text": "b"}]] * 3
    assert external_scores(Pairwise(), [{}] * 3, samples) == [1.0, 0.0, 0.5, 0.5, 0.0, 1.0]


def test_self_label_accuracy_excludes_ties():
    """Gold score = length. Pairs (chosen, rejected): ("aaa","a") agree, ("a","aa") disagree, ("bb","cc") tie,
    ("xxxx","") agree -> accuracy 2/3 over decided pairs, tie share 1/4."""
    from methods.core.labelers import gold_agreement

    class Len:
        def score(self, items, outs):
            return [len(o) for o in outs]

    pairs = [{"id": str(k), "chosen": c, "rejected": r} for k, (c, r) in enumerate([("aaa", "a"), ("a", "aa"), ("bb", "cc"), ("xxxx", "")])]
    got = gold_agreement(pairs, Len(), {str(k): {} for k in range(4)})
    assert got["self_label_accuracy"] == pytest.approx(2 / 3)
    assert got["gold_tie_share"] == pytest.approx(0.25)
    assert got["n_gold_decided"] == 3
    assert gold_agreement(pairs, None, {})["self_label_accuracy"] is None


# ---- window, threshold, p̂ ---------------------------------------------------------------------------
def test_window_keeps_last_50_and_threshold_is_linear_10th_percentile():
    """Push 1..60: the window keeps 11..60 (50 values). Linear 10th percentile: rank (50−1)·0.1 = 4.9 between
    the 5th and 6th smallest (15, 16) -> 15 + 0.9·1 = 15.9 (= numpy.percentile(11..60, 10)).
    p̂(15) = 0 (flagged), p̂(15.9) = 0 (not strictly above), p̂(16) = 1, p̂(60) = 1; 5 of the 50 are flagged."""
    import numpy as np

    from methods.spa.loss import MarginWindow

    w = MarginWindow(size=50, percentile=10)
    assert w.threshold() == float("-inf")
    w.push(range(1, 31))
    w.push(range(31, 61))
    assert w.margins == [float(x) for x in range(11, 61)]
    assert w.threshold() == pytest.approx(15.9)
    assert w.threshold() == pytest.approx(np.percentile(np.arange(11, 61), 10))
    assert w.p_hat(torch.tensor([15.0, 15.9, 16.0, 60.0])).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert int((w.p_hat(torch.tensor(w.margins)) == 0).sum()) == 5


# batch margins of five training steps, two pairs each (batch means 2, −1, 5, 0.5, 1.75)
STEPS = [[1.0, 3.0], [-2.0, 0.0], [4.0, 6.0], [0.0, 1.0], [0.5, 3.0]]


def _feed(w, steps):
    """(threshold used, p̂) of each training step through `MarginWindow.observe`."""
    out = []
    for batch in steps:
        p = w.observe(torch.tensor(batch, dtype=torch.float64), training=True)
        out.append((w.last_threshold, p.tolist()))
    return out


def test_released_threshold_hand_values():
    """Released convention, window 4, percentile 25 -> k = int(4·0.25) = 1: threshold = (sorted[1] + sorted[2]) / 2
    of the last 4 *earlier* steps' batch means, 0 until 4 steps are in the window; p̂ = 1[m > threshold].
    Steps 1-4 see 0, 1, 2, 3 entries -> threshold 0: p̂ [1, 1], [0, 0] (0 is not above 0), [1, 1], [0, 1].
    Step 5 sees the means [2, −1, 5, 0.5], sorted [−1, 0.5, 2, 5] -> (0.5 + 2)/2 = 1.25: p̂([0.5, 3]) = [0, 1].
    Then the window is [−1, 5, 0.5, 1.75] (step 1 dropped), sorted [−1, 0.5, 1.75, 5] -> (0.5 + 1.75)/2 = 1.125;
    an evaluation batch [1.125, 2] reads it without entering it: p̂ = [0, 1]."""
    from methods.spa.loss import MarginWindow, released_threshold

    w = MarginWindow(size=4, percentile=25, convention="released")
    assert w.threshold() == 0.0  # empty window
    got = _feed(w, STEPS)
    assert [t for t, _ in got] == [0.0, 0.0, 0.0, 0.0, 1.25]
    assert [p for _, p in got] == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    assert w.margins == [-1.0, 5.0, 0.5, 1.75]
    assert w.threshold() == 1.125
    assert w.observe(torch.tensor([1.125, 2.0], dtype=torch.float64), training=False).tolist() == [0.0, 1.0]
    assert w.margins == [-1.0, 5.0, 0.5, 1.75]  # evaluation adds nothing
    # the paper's setting: window 50, 10% -> k = 5, the mean of the 6th and 7th smallest; 49 entries -> still 0
    assert released_threshold([float(x) for x in range(1, 50)], 50, 0.1) == 0.0
    assert released_threshold([float(x) for x in range(50, 0, -1)], 50, 0.1) == 6.5
    restored = MarginWindow(**json.loads(json.dumps(w.state()))["args"])  # as transformers rebuilds it on resume
    assert restored.convention.name == "released" and w.stats()["threshold_convention"] == "released"
    assert w.stats()["last_threshold"] == 1.25


def test_current_threshold_hand_values_on_the_same_steps():
    """Current convention, window 4, percentile 25: the step's two margins enter first (the window keeps the last 4
    margins), then threshold = linear quantile at rank (n−1)·0.25 of the sorted window:
    step 1 [1, 3]: rank 0.25 -> 1 + 0.25·(3 − 1) = 1.5, p̂ [0, 1];
    step 2 [1, 3, −2, 0] -> sorted [−2, 0, 1, 3], rank 0.75 -> −2 + 0.75·2 = −0.5, p̂([−2, 0]) = [0, 1];
    step 3 [−2, 0, 4, 6], rank 0.75 -> −2 + 0.75·2 = −0.5, p̂([4, 6]) = [1, 1];
    step 4 [4, 6, 0, 1] -> sorted [0, 1, 4, 6] -> 0 + 0.75·1 = 0.75, p̂([0, 1]) = [0, 1];
    step 5 [0, 1, 0.5, 3] -> sorted [0, 0.5, 1, 3] -> 0 + 0.75·0.5 = 0.375, p̂([0.5, 3]) = [1, 1]
    (the released convention also flags step 2's 0 and step 5's 0.5, which this one keeps)."""
    import numpy as np

    from methods.spa.loss import MarginWindow

    w = MarginWindow(size=4, percentile=25)
    assert w.convention.name == "current" and w.threshold() == float("-inf")
    got = _feed(w, STEPS)
    assert [t for t, _ in got] == pytest.approx([1.5, -0.5, -0.5, 0.75, 0.375], abs=1e-12)
    assert [p for _, p in got] == [[0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
    assert w.margins == [0.0, 1.0, 0.5, 3.0]
    assert w.threshold() == pytest.approx(np.percentile([0.0, 1.0, 0.5, 3.0], 25))


def test_pair_loss_released_takes_the_threshold_before_the_batch():
    """Released, window 2, percentile 0 (k = 0). z = [4, −2], β = 0.5 -> m = [2, −1]; the window is empty, so the
    threshold is 0: p̂ = [1, 0], losses [0.126928, 1.213262] (α = 0.1 from progress 0.5); the window then holds
    the batch mean 0.5. Second step m = [0.2, 1] (z = [0.4, 2]): one entry, still 0 -> p̂ = [1, 1]; window
    [0.5, 0.6]. Third step: full, threshold (0.5 + 0.6)/2 = 0.55 -> m = [0.5, 0.6] (z = [1, 1.2]) gives p̂ = [0, 1].
    Under "current" the first step's threshold would be −1 + 0 = −1 (the batch's own minimum): p̂ [1, 0] too."""
    from methods.spa.loss import MarginWindow, SelfRefinedDPOTrainer

    stub = _StubTrainer(0.5)
    stub._window = MarginWindow(2, 0, convention="released")
    loss = SelfRefinedDPOTrainer.pair_loss(stub, _pair_batch([4.0, -2.0]))
    assert loss.tolist() == pytest.approx([0.126928, 1.213262], abs=1e-6)
    assert stub._window.last_threshold == 0.0 and stub._window.margins == [0.5]
    SelfRefinedDPOTrainer.pair_loss(stub, _pair_batch([0.4, 2.0]))
    assert stub._window.last_threshold == 0.0 and stub._window.margins == pytest.approx([0.5, 0.6])
    SelfRefinedDPOTrainer.pair_loss(stub, _pair_batch([1.0, 1.2]))
    assert stub._window.last_threshold == pytest.approx(0.55)
    assert stub._metrics["train"]["spa/flagged_share"] == [0.5, 0.0, 0.5]
    st = stub._window.stats()
    assert st["n_seen"] == 6
    assert st["flagged_share"] == pytest.approx(2 / 6) and st["noisy_share"] == pytest.approx(2 / 6)


def test_threshold_convention_validation():
    """Unknown names raise ValueError naming the setting and the choices; "released" needs k + 1 < window
    (window 50: percentile 96 -> k = 48 is fine, 98 -> k = int(49.0) = 49 is not; window 1 never)."""
    from methods.spa.loss import MarginWindow, check_threshold_settings

    with pytest.raises(ValueError, match=r"method\.threshold_convention='paper'.*\['current', 'released'\]"):
        check_threshold_settings("paper", 50, 10)
    assert check_threshold_settings("released", 50, 96).name == "released"
    for window, pct in [(50, 98), (50, 100), (1, 0), (2, 50)]:
        with pytest.raises(ValueError, match="threshold_convention=released"):
            check_threshold_settings("released", window, pct)
    assert check_threshold_settings("current", 1, 100).name == "current"  # torch.quantile takes any window
    with pytest.raises(ValueError, match="threshold_convention"):
        MarginWindow(50, 10, convention="Released")


def test_window_state_survives_a_resume():
    """The window's state goes into TrainerState.stateful_callbacks at a checkpoint; a fresh window restores it
    in on_train_begin when training resumes (global_step > 0), and ignores it on a fresh start."""
    from types import SimpleNamespace

    from methods.spa.loss import MarginWindow

    w = MarginWindow(50, 10)
    w.push([1.0, 2.0, 3.0])
    w.record(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 1.0]), alpha=0.1)
    saved = {"MarginWindow": json.loads(json.dumps(w.state()))}
    fresh = MarginWindow(50, 10)
    fresh.on_train_begin(None, SimpleNamespace(stateful_callbacks=saved, global_step=0), None)
    assert fresh.margins == [] and fresh.n_seen == 0
    fresh.on_train_begin(None, SimpleNamespace(stateful_callbacks=saved, global_step=7), None)
    assert fresh.margins == [1.0, 2.0, 3.0] and fresh.stats() == w.stats()
    assert w.stats()["noisy_share"] == pytest.approx(1 / 3) and w.stats()["mean_margin"] == pytest.approx(2.0)


# ---- the loss -------------------------------------------------------------------------------------
def test_smoothed_loss_hand_values():
    """z = 4, β = 0.5, α = 0.1. p̂ = 1: −log σ(2) = log(1 + e^−2) = 0.126928.
    p̂ = 0: 0.9·log(1 + e^−2) + 0.1·log(1 + e^2) = 0.9·0.126928 + 0.1·2.126928 = 0.326928.
    z = −2, p̂ = 0: 0.9·log(1 + e) + 0.1·log(1 + e^−1) = 0.9·1.313262 + 0.1·0.313262 = 1.213262."""
    from methods.spa.loss import smoothed_dpo_loss

    z = torch.tensor([4.0, 4.0, -2.0], dtype=torch.float64)
    p_hat = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert smoothed_dpo_loss(z, p_hat, 0.1, 0.5).tolist() == pytest.approx([0.126928, 0.326928, 1.213262], abs=1e-6)
    assert smoothed_dpo_loss(z, p_hat, 0.0, 0.5).tolist() == pytest.approx(
        [0.126928, 0.126928, math.log1p(math.e)], abs=1e-6)  # α = 0: plain DPO


def test_dnd_mixed_logprob_hand_value():
    """h_θ = [1, 2, 3], h_ref = [3, 2, 1], λ = 1/2: h̃ = 1.5·h_θ − 0.5·h_ref = [0, 2, 4];
    log softmax(h̃)[2] = 4 − log(1 + e^2 + e^4) = 4 − log(62.987206) = −0.142931; [0] = −4.142931.
    λ = 0 gives log softmax(h_θ)[2] = 3 − log(e + e^2 + e^3) = −0.407606."""
    from methods.spa.loss import mixed_token_logps

    pol = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    ref = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    got = mixed_token_logps(pol, ref, torch.tensor([2, 0]), 0.5)
    assert got.tolist() == pytest.approx([-0.142931, -4.142931], abs=1e-5)
    assert mixed_token_logps(pol, ref, torch.tensor([2, 2]), 0.0).tolist() == pytest.approx([-0.407606] * 2, abs=1e-5)


class _StubTrainer:
    """Just enough of SelfRefinedDPOTrainer for `pair_loss` with λ = 0 (no model forward)."""

    def __init__(self, progress, alpha=0.1, warmup=0.2):
        from types import SimpleNamespace

        from methods.spa.loss import MarginWindow, RefineSettings

        self.settings = RefineSettings(lam=0.0, alpha=alpha, warmup_fraction=warmup)
        self.beta = 0.5
        self.progress = progress
        self.model = SimpleNamespace(training=True)
        self._window = MarginWindow(50, 10)
        self._metrics = {"train": defaultdict(list)}


def _pair_batch(z):
    from methods.core.trainers.dpo import PairBatch

    t = torch.tensor(z, dtype=torch.float64)
    zero = torch.zeros_like(t)
    return PairBatch(t, zero, zero, zero, inputs={}, outputs=None)  # chosen − rejected log-ratio = z


@pytest.mark.parametrize("progress,expected", [(0.1, [0.126928, 1.313262]), (0.19, [0.126928, 1.313262]),
                                               (0.2, [0.126928, 1.213262]), (0.7, [0.126928, 1.213262])])
def test_alpha_is_zero_during_first_20_percent(progress, expected):
    """z = [4, −2], β = 0.5 -> m = βz = [2, −1]; the window is [2, −1], threshold = −1 + 0.1·(2 − (−1)) = −0.7,
    p̂ = [1, 0]. Before 20% of the steps α = 0: losses [log(1+e^−2), log(1+e)] = [0.126928, 1.313262];
    from 20% on α = 0.1 smooths the flagged pair: 0.9·1.313262 + 0.1·0.313262 = 1.213262."""
    from methods.spa.loss import SelfRefinedDPOTrainer

    stub = _StubTrainer(progress)
    loss = SelfRefinedDPOTrainer.pair_loss(stub, _pair_batch([4.0, -2.0]))
    assert loss.tolist() == pytest.approx(expected, abs=1e-6)
    assert stub._window.threshold() == pytest.approx(-0.7)
    st = stub._window.stats()
    assert st["flagged_share"] == 0.5 and st["noisy_share"] == (0.5 if progress >= 0.2 else 0.0)
    assert st["mean_margin"] == pytest.approx(0.5)
    assert stub._metrics["train"]["spa/alpha"] == [0.1 if progress >= 0.2 else 0.0]


def _collated(tiny, tmp_path, lam):
    from datasets import Dataset
    from trl import DPOConfig

    from methods.core.trainers.dpo import conversational_rows
    from methods.spa.loss import RefineSettings, SelfRefinedDPOTrainer

    src, _, tok = tiny
    model, _ = src.load(for_generation=False)
    rows = conversational_rows([{"prompt": p, "chosen": c, "rejected": r}
                                for p, c, r in [("say hi", "hi!", "no way"), ("2+2?", "4", "five, I think")]])
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, report_to=[], bf16=False, use_cpu=True,
                     beta=0.1, precompute_ref_log_probs=True, gradient_checkpointing=False, max_steps=1)
    cls = SelfRefinedDPOTrainer.configured(RefineSettings(lam=lam))
    trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, model, batch


def test_dnd_logps_on_a_real_batch(tiny, tmp_path):
    """On a collated TRL batch: with the policy moved away from its initial copy (the DND reference),
    the hook's mixed log-probs equal Σ log softmax((1+λ)h_θ − λh_ref) over the completion tokens from two
    full forwards; and with λ = 0 they equal log π_θ from TRL's fused forward (same positions)."""
    trainer, model, batch = _collated(tiny, tmp_path, lam=0.5)
    assert trainer._dnd_ref is not None and trainer._dnd_ref is not model
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    with torch.no_grad():
        mix_c, mix_r = trainer._mixed_logps(batch, 0.5)
        zero_c, zero_r = trainer._mixed_logps(batch, 0.0)
        ids, cm = batch["input_ids"], batch["completion_mask"]
        hp = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits.float()
        hr = trainer._dnd_ref(input_ids=ids, attention_mask=batch["attention_mask"]).logits.float()
        mask = cm[:, 1:].bool()
        lp_mix = (1.5 * hp - 0.5 * hr).log_softmax(-1)[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        lp_pol = hp.log_softmax(-1)[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        hand_mix = (lp_mix * mask).sum(1)
        hand_pol = (lp_pol * mask).sum(1)
        labels = ids.masked_fill(cm == 0, -100)
        fused = model(input_ids=ids, attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True)
        fused_sum = fused.log_probs[:, -(cm.size(1) - 1):].sum(1)
    assert torch.cat([mix_c, mix_r]).tolist() == pytest.approx(hand_mix.tolist(), abs=1e-3)
    assert torch.cat([zero_c, zero_r]).tolist() == pytest.approx(hand_pol.tolist(), abs=1e-3)
    assert torch.cat([zero_c, zero_r]).tolist() == pytest.approx(fused_sum.tolist(), abs=1e-3)
    assert (hand_mix - hand_pol).abs().max() > 1e-3  # the mixing changed something


# ---- end to end -----------------------------------------------------------------------------------
E2E = [
    "model=tiny_llama", "method=spa", "data.n_labelled=16", "data.seed_fraction=1.0", "data.n_unlabelled=[4,4]",
    "data.n_eval=4", "data.label_sampling.n=3", "data.label_sampling.max_new_tokens=32", "eval.max_new_tokens=8",
    "method.n_samples=3", "method.max_new_tokens=8", "method.lambdas=[0.5,0.25]", "method.warmup_fraction=0.0",
    "method.percentile=100",
    "trainers.policy.args.per_device_train_batch_size=2", "trainers.policy.args.max_length=1024", "trainers.policy.args.learning_rate=1e-3",
    "trainers.policy.args.warmup_steps=0", "trainers.policy.args.disable_tqdm=true", "generation.progress=false",
    # the random model's byte soup never passes gold v2's content gate and never ends: label with v1
    # (constraints only) and keep unfinished samples, so the plumbing has pairs to work on
    "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge", "data.label_sampling.drop_unfinished=false",
]
STAGES = ["seed_pairs", "seed_train", "iter0_eval", "iter1_samples", "iter1_labels", "iter1_train", "iter1_eval",
          "iter2_samples", "iter2_labels", "iter2_train", "eval"]


def test_spa_end_to_end_and_resume(tmp_path, caplog, monkeypatch):
    """Two iterations on the tiny model: every stage leaves its directory, metrics.json has one row per
    iteration (0 = π_0) with the per-iteration keys, and a second run skips every finished stage.
    Quality is not checked on random bytes; an iteration without pairs would carry the policy over
    (`trained: false`). Exact values the setup fixes: with percentile 100 the threshold ("current") is the
    maximum of a window that holds the batch's own margins, so no margin is strictly above it and every
    pair is flagged; with warmup 0, α = 0.1 from the first step, so every flagged pair is smoothed:
    flagged_share = noisy_share = 1 (4 of 4 pairs, 1 epoch). self_label_accuracy = agree / (agree + disagree)
    and gold_tie_share = ties / 4, counted from the gold labeller's own scores of the pairs written in
    iter{i}_labels/pairs.jsonl (None when every pair ties)."""
    from experiments.pipeline import build_run, execute
    from tests.test_configs import compose

    monkeypatch.setenv("SELFALIGN_CACHE", str(tmp_path / "cache"))
    ov = [*E2E, f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]
    run = build_run(compose(ov))
    metrics = execute(run)
    run_dir = tmp_path / "run"
    for s in STAGES:
        assert (run_dir / s / "_done.json").exists(), s
    rows = metrics["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    keys = {"iteration", "win_rate", "standard_error", "lc_win_rate", "judge_score", "n_pairs", "trained"}
    assert all(keys <= set(r) for r in rows)
    assert all({"self_label_accuracy", "noisy_share", "mean_margin", "lambda"} <= set(r) for r in rows[1:])
    assert rows[0]["n_pairs"] >= 1 and rows[0]["trained"]
    for i, r in enumerate(rows[1:], start=1):
        assert r["n_pairs"] == 4 and r["trained"]  # float rewards: no ties among random samples
        assert r["flagged_share"] == 1.0 and r["noisy_share"] == 1.0 and r["mean_margin"] is not None
        lines = (run_dir / f"iter{i}_labels" / "pairs.jsonl").read_text().splitlines()
        pairs = [json.loads(line) for line in lines]
        by_id = {it["id"]: it for it in run.data.unlabelled(i)}
        items = [by_id[p["id"]] for p in pairs]
        gold_c = run.gold.score(items, [p["chosen"] for p in pairs])
        gold_r = run.gold.score(items, [p["rejected"] for p in pairs])
        agree = sum(a > b for a, b in zip(gold_c, gold_r))
        decided = agree + sum(a < b for a, b in zip(gold_c, gold_r))
        assert r["self_label_accuracy"] == (agree / decided if decided else None)
        assert r["gold_tie_share"] == pytest.approx(1 - decided / 4)
    assert [r.get("lambda") for r in rows] == [None, 0.5, 0.25]
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["iterations"][-1]["win_rate"] == on_disk["win_rate"]  # the last row is the run's own eval
    labels = json.loads((run_dir / "iter1_labels" / "stats.json").read_text())
    assert labels["n_pairs"] == 4 and labels["labeler"] == "implicit:sft"

    before = {s: (run_dir / s / "_done.json").stat().st_mtime_ns for s in STAGES}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="selfalign"):
        again = execute(build_run(compose(ov)))
    for s in STAGES:
        assert f"stage {s}: finished earlier, skipped" in caplog.text
    assert {s: (run_dir / s / "_done.json").stat().st_mtime_ns for s in STAGES} == before
    pick = lambda rs: [(r["iteration"], r["n_pairs"], r["win_rate"], r.get("noisy_share")) for r in rs]  # noqa: E731
    assert pick(again["iterations"]) == pick(rows)


def test_selfie_alias_and_bad_settings(tmp_path):
    from experiments.pipeline import build_run
    from tests.test_configs import compose

    base = ["model=tiny_llama", f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/cache"]
    run = build_run(compose([*base, "method=selfie"]))
    assert run.method.name == "selfie" and type(run.method).__name__ == "SPA"
    for bad, word in [("labeler.reference=gpt", "labeler.reference"), ("method.n_samples=1", "n_samples"),
                      ("method.n_iterations=9", "n_iterations"), ("method.alpha=2", "alpha"),
                      ("method.threshold_convention=paper", r"threshold_convention.*\['current', 'released'\]")]:
        with pytest.raises(ValueError, match=word):
            build_run(compose([*base, "method=spa", bad]))
    released = [*base, "method=spa", "method.threshold_convention=released"]
    with pytest.raises(ValueError, match="threshold_convention=released"):
        build_run(compose([*released, "method.percentile=100"]))  # k = 50: no sorted entry k + 1
    assert build_run(compose(released)).method.threshold_convention == "released"
    assert not (tmp_path / "cache" / "models").exists()
