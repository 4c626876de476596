"""`PPOTrainerSpec`: the `conf/trainer/ppo.yaml` entry. `args` are `PPOConfig` fields; rows are {id,
prompt (text or chat), item (what the scorer reads)}; the reward scorer is given at train time:

    spec.train(run, rows, "ppo", scorer=GoldJudge())

as for `trainer=grpo|rloo` (`methods/core/trainers/rl.py`), so the three are interchangeable.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from methods.core.trainers.base import TrainerSpec


@dataclass
class PPOTrainerSpec(TrainerSpec):
    name: str = "ppo"
    output_name = "policy"
    curve_keys = ("score", "kl", "value_loss")

    def config_class(self):
        from methods.core.trainers.ppo.config import PPOConfig

        return PPOConfig

    def dataset(self, tok, rows, args, stage):
        from methods.core.trainers.rl import items_by_id

        items_by_id(rows)  # every row has its item, before any model work
        return [{"id": r["id"], "prompt": r["prompt"], "item": r["item"]} for r in rows], {"n_prompts": len(rows)}

    def trainer_class(self):
        from methods.core.trainers.ppo.trainer import PPOTrainer

        return PPOTrainer

    def train(self, run, rows: list[dict], stage: str, init_path: str | None = None, trainer_cls=None, *,
              scorer=None, **arg_overrides) -> str:
        if scorer is None:
            raise ValueError("trainer ppo: train(..., scorer=...) needs the reward scorer (e.g. GoldJudge())")
        cls = functools.partial(trainer_cls or self.trainer_class(), scorer=scorer)
        return super().train(run, rows, stage, init_path, cls, **arg_overrides)
