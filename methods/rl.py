"""`method=rl`: online RL of the policy against a reward scorer on a fixed prompt set — the shared RL
trainer's demonstration run and the RL baseline (`trainer@trainers.rl=ppo|grpo|rloo`).

Prompts: the data's labelled pool (`method.prompts=labelled`) or its first unlabelled pool
(`unlabelled`); reward: the data set's gold labeller (`method.reward=gold`; on the embedded default, the
gold judge v2) or the evaluation's judge when it scores outputs (`judge`). The metrics carry the first
and the last update's mean reward (`first_score`, `last_score`) and KL to the initial policy
(`first_kl`, `last_kl`), from the trainer's log: for PPO nats per response (k1 summed over its tokens),
for GRPO / RLOO TRL's per-token mean (absent when their beta is 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from methods.core.contract import MethodResult, Policy

PROMPT_SETS = ("labelled", "unlabelled")
REWARDS = ("gold", "judge")


@dataclass
class RL:
    name: str = "rl"
    prompts: str = "labelled"  # labelled | unlabelled (pool 1)
    n_prompts: int | None = None  # null = the whole set
    reward: str = "gold"  # gold (the data's gold labeller) | judge (the evaluation judge's score)
    trainer: Any = None  # conf/trainer/ppo|grpo|rloo, as trainers.rl

    def validate(self, run) -> None:
        from methods.judges.base import Scorer

        if self.prompts not in PROMPT_SETS:
            raise ValueError(f"method.prompts={self.prompts!r}: choose one of {list(PROMPT_SETS)}")
        if self.reward not in REWARDS:
            raise ValueError(f"method.reward={self.reward!r}: choose one of {list(REWARDS)}")
        scorer = self._scorer(run)
        if not isinstance(scorer, Scorer):
            raise ValueError(f"method.reward={self.reward}: {getattr(scorer, 'name', scorer)!r} cannot score single "
                             "outputs (score(items, outputs)); an RL reward needs one")
        if self.n_prompts is not None and self.n_prompts < 1:
            raise ValueError(f"method.n_prompts={self.n_prompts}: >= 1 or null")
        if not callable(getattr(self.trainer, "train", None)):
            raise ValueError("method.trainer: a conf/trainer/ entry (trainer@trainers.rl=ppo|grpo|rloo)")
        self.trainer.validate("trainers.rl")

    def _scorer(self, run):
        scorer = run.gold if self.reward == "gold" else run.judge
        if scorer is None:
            raise ValueError(f"method.reward=gold: data={run.cfg.data.name} has no gold labeller (data.labeller)")
        return scorer

    def __call__(self, run) -> MethodResult:
        from methods.core.trainers.rl import log_summary

        items = run.data.labelled() if self.prompts == "labelled" else run.data.unlabelled(1)
        items = items[: self.n_prompts] if self.n_prompts else items
        rows = [{"id": it["id"], "prompt": it["instruction"], "item": it} for it in items]
        policy = self.trainer.train(run, rows, "rl", scorer=self._scorer(run))
        metrics = {"n_prompts": len(rows), "rl_trainer": self.trainer.name, "reward": self.reward,
                   **log_summary(policy)}
        return MethodResult(Policy(policy), metrics)
