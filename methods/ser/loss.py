"""SER's reward losses as `reward_loss` hooks. The default (the released code) is the trainer family's
Bradley–Terry loss, −log σ(r_w − r_l); the paper's form is a hinge on the gap:

    loss = max(0, Δ − (r_w − r_l))      per pair; Δ = `method.hinge_margin` (the paper does not state it)
"""
from __future__ import annotations

from methods.core.trainers.reward import PreferenceRewardTrainer


class HingeRewardTrainer(PreferenceRewardTrainer):
    margin = 1.0

    def reward_loss(self, batch):
        return (self.margin - (batch.chosen_rewards - batch.rejected_rewards)).clamp(min=0)


def hinge_trainer(margin: float) -> type:
    return type("HingeRewardTrainer", (HingeRewardTrainer,), {"margin": float(margin)})
