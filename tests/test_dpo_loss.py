"""The shared DPO trainer's loss hook, checked by hand and against TRL's own loss."""
from __future__ import annotations

import math

import pytest
import torch


class _Stub:
    """Just enough of a trainer for `pair_loss`: beta and label_smoothing."""

    def __init__(self, beta, eps):
        self.beta, self.label_smoothing = beta, eps


def _batch(pc, pr, rc, rr):
    from methods.core.trainers.dpo import PairBatch

    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return PairBatch(t(pc), t(pr), t(rc), t(rr), inputs={}, outputs=None)


def test_sigmoid_loss_matches_hand_computation():
    """Pair 1: policy logps (-10, -14), reference (-12, -12) -> z = (−10+12) − (−14+12) = 4.
    With β = 0.5: loss = −log σ(2) = log(1 + e^−2) = 0.126928.
    Pair 2: policy (-5, -3), reference (-5, -5) -> z = 0 − 2 = −2; loss = −log σ(−1) = log(1 + e) = 1.313262.
    """
    from methods.core.trainers.dpo import PreferenceDPOTrainer

    loss = PreferenceDPOTrainer.pair_loss(_Stub(0.5, 0.0), _batch([-10, -5], [-14, -3], [-12, -5], [-12, -5]))
    assert loss.tolist() == pytest.approx([math.log1p(math.exp(-2)), math.log1p(math.e)], rel=1e-9)
    assert loss.tolist() == pytest.approx([0.126928, 1.313262], abs=1e-6)


def test_label_smoothing_mixes_both_directions():
    """z = 4, β = 0.5, ε = 0.1: loss = 0.9·log(1 + e^−2) + 0.1·log(1 + e^2) = 0.9·0.126928 + 0.1·2.126928 = 0.326928."""
    from methods.core.trainers.dpo import PreferenceDPOTrainer

    loss = PreferenceDPOTrainer.pair_loss(_Stub(0.5, 0.1), _batch([-10], [-14], [-12], [-12]))
    assert loss.item() == pytest.approx(0.326928, abs=1e-6)


@pytest.mark.parametrize("precompute", [False, True])
def test_default_hook_equals_trl_loss(tiny, tmp_path, precompute):
    """On a real collated batch of the tiny model, the subclass's loss equals TRL's DPOTrainer's."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from methods.core.trainers.dpo import PreferenceDPOTrainer

    src, _, tok = tiny
    model, _ = src.load(for_generation=False)
    rows = [
        {"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
         "rejected": [{"role": "assistant", "content": r}]}
        for p, c, r in [("say hi", "hi!", "no way"), ("2+2?", "4", "five, I think"), ("a", "b", "cc")]
    ]
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=3, report_to=[], bf16=False, use_cpu=True,
                     beta=0.1, precompute_ref_log_probs=precompute, gradient_checkpointing=False, max_steps=1)
    ds = Dataset.from_list(rows)
    ours = PreferenceDPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    theirs = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    batch = next(iter(theirs.get_train_dataloader()))
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy away from the reference so the loss is not log 2
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    a, b = theirs.compute_loss(model, batch).item(), ours.compute_loss(model, batch).item()
    assert a == pytest.approx(b, rel=1e-6)
    assert abs(a - math.log(2)) > 1e-4


@pytest.mark.parametrize("precompute", [False, True])
def test_row_weights_reach_the_loss(tiny, tmp_path, precompute):
    """Rows with a `weight` column (through DPOTrainerSpec.dataset, TRL's tokenisation, the optional
    reference precomputation and collation): the batch loss is mean(w_i · pair_loss_i), each weight
    with its own row (a 0-weight row adds nothing), and `chosen_lengths` counts each chosen response's
    completion tokens."""
    from methods.core.trainers.dpo import DPOTrainerSpec, PreferenceDPOTrainer

    seen = {}

    class Recording(PreferenceDPOTrainer):
        def pair_loss(self, batch):
            losses = super().pair_loss(batch)
            seen.update(losses=losses.detach(), weights=batch.weights, lengths=batch.chosen_lengths,
                        ids=batch.inputs["input_ids"])
            return losses

    src, _, tok = tiny
    model, _ = src.load(for_generation=False)
    rows = [{"id": "a", "prompt": "say hi", "chosen": "hi!", "rejected": "no way", "weight": 2.0},
            {"id": "b", "prompt": "2+2?", "chosen": "4", "rejected": "five, I think", "weight": 0.0},
            {"id": "c", "prompt": "a", "chosen": "bb", "rejected": "cc"}]
    spec = DPOTrainerSpec(args={"per_device_train_batch_size": 3, "report_to": [], "bf16": False, "beta": 0.1,
                                "precompute_ref_log_probs": precompute, "gradient_checkpointing": False,
                                "max_steps": 1, "max_length": 256})
    targs = spec.training_args(tmp_path)
    ds, _ = spec.dataset(tok, rows, targs, "gen")
    assert ds[2]["weight"] == 1.0
    trainer = spec.trainer(model, tok, ds, targs, trainer_cls=Recording)
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    loss = trainer.compute_loss(model, batch).item()
    w = seen["weights"]
    assert sorted(w.tolist()) == [0.0, 1.0, 2.0]
    assert loss == pytest.approx((seen["losses"] * w).mean().item(), rel=1e-6)
    assert loss != pytest.approx(seen["losses"].mean().item(), rel=1e-3)
    # byte-level tokens: the chosen responses "hi!", "4", "bb" plus the end-of-turn tokens after them
    n_end = int(seen["lengths"].min().item()) - 1
    by_weight = dict(zip(w.tolist(), seen["lengths"].tolist()))
    assert by_weight == {2.0: 3 + n_end, 0.0: 1 + n_end, 1.0: 2 + n_end}
