"""The PPO reward of SER's policy stage from the final reward model: σ(RM(x, y)) (`rl_reward=sigmoid`,
METHODS.md), or the raw score (`logit`: the code's `ppo.py` reward, score − reward_baseline with the
baseline 0.0 that `ppo.sh` passes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from methods.judges.base import sigmoid

TRANSFORMS = {"sigmoid": sigmoid, "logit": float}


@dataclass
class RMReward:
    judge: Any  # a RewardModelJudge on the final RM
    transform: str = "sigmoid"
    name: str = "ser_rm"

    def score(self, items, outputs) -> list[float]:
        f = TRANSFORMS[self.transform]
        return [f(s) for s in self.judge.score(items, outputs)]
