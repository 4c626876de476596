"""Launched by tests/test_multiprocess.py, once alone and once under `accelerate launch`: trains one
trainer (dpo | reward | ppo) on four fixed rows of the tiny model through the shared stage, into OUT.

    python tests/dist_train.py KIND OUT CACHE PER_DEVICE_BATCH
With 2 processes and per-device batch 2, every step sees the same 4 rows as 1 process with batch 4,
so the two runs should end with the same weights up to float reduction order.
"""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

ROWS = [
    {"id": "a", "prompt": "Name a fruit.", "chosen": "An apple, crisp and sweet.", "rejected": "rock"},
    {"id": "b", "prompt": "Say hello.", "chosen": "Hello there, friend!", "rejected": "no"},
    {"id": "c", "prompt": "Count to three.", "chosen": "One, two, three.", "rejected": "seven"},
    {"id": "d", "prompt": "Name a colour.", "chosen": "Blue, like the sky.", "rejected": "xq"},
]


def main(kind: str, out: str, cache: str, batch: int) -> None:
    import torch

    from methods.core.models import TinyLlama
    from methods.core.run import Run
    from methods.core.trainers.dpo import DPOTrainerSpec
    from methods.core.trainers.reward import RewardTrainerSpec

    torch.set_num_threads(1)
    args = {"per_device_train_batch_size": batch, "max_steps": 3, "learning_rate": 0.05, "optim": "sgd",
            "lr_scheduler_type": "constant", "warmup_steps": 0, "save_strategy": "no", "logging_steps": 1,
            "report_to": [], "disable_tqdm": True, "seed": 0, "bf16": False, "gradient_checkpointing": False,
            "max_length": 256}
    source = TinyLlama(cache_dir=f"{cache}/models")
    run = Run(OmegaConf.create({"seed": 0}), out, source, data=None, judge=None, method=None, cache_dir=f"{cache}/artifacts")
    if kind == "ppo":  # rollouts differ per process (own prompts, own seeds): checked for running, not equality
        from methods.core.trainers.ppo.spec import PPOTrainerSpec

        spec = PPOTrainerSpec(args={"max_steps": 2, "rollout_prompts": batch, "mini_batch_size": batch,
                                    "ppo_epochs": 1, "max_new_tokens": 8, "save_steps": 1, "seed": 0})
        rows = [{**r, "item": {"id": r["id"]}} for r in ROWS]
        print("trained:", spec.train(run, rows, "train", scorer=Length()))
        return
    spec = {"dpo": lambda: DPOTrainerSpec(args={**args, "beta": 0.1, "precompute_ref_log_probs": True}),
            "reward": lambda: RewardTrainerSpec(args=args)}[kind]()
    print("trained:", spec.train(run, ROWS, "train"))


class Length:
    name = "length"

    def score(self, items, outputs):
        return [len(o) / 10 for o in outputs]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
