"""PIT's RL rounds: the shared PPO trainer with the KL measured to M_PIT's SFT model (the paper's
reference), not to the round's initial weights, which differ from it in the second round. One hook:
the reference model is loaded from `reference_path` after the trainer is built."""
from __future__ import annotations

from methods.core.trainers.ppo.trainer import PPOTrainer


class SFTReferencePPO(PPOTrainer):
    def __init__(self, model, args, *rest, reference_path: str | None = None, **kwargs):
        super().__init__(model, args, *rest, **kwargs)
        if reference_path is None or reference_path == model.config._name_or_path:
            return  # the initial weights are the reference already
        if self.ref is None:
            raise ValueError("pit: with LoRA the PPO reference is the initial weights (adapters off), not M_PIT's "
                             "SFT; train the RL rounds in full (trainers.rl.lora: null)")
        dtype = next(model.parameters()).dtype
        self.ref = None  # the initial weights' copy goes before the SFT model loads: two copies, not three
        self.ref = type(model).from_pretrained(reference_path, dtype=dtype).eval().requires_grad_(False).to(
            self.accelerator.device)


def round_rows(pairs: list[dict], rnd: int, prompts, references: dict | None = None) -> list[dict]:
    """PPO rows {id, prompt (the improver's turn), item {id, instruction, y_ref}} of a curriculum round:
    round 0 improves over the data's answers (y_ref ∈ {y_l, y_w}: two rows a pair); round 1 over the
    policy's samples (`references`: pair id -> [y_ref ~ M_P(x), ...])."""
    rows = []
    for p in pairs:
        refs = ([("l", p["rejected"]), ("w", p["chosen"])] if rnd == 0
                else [(f"p{k}", y) for k, y in enumerate(references[p["id"]])])
        for tag, ref in refs:
            rid = f"{p['id']}:{tag}"
            rows.append({"id": rid, "prompt": prompts.improve_turn(p["prompt"], ref),
                         "item": {"id": rid, "instruction": p["prompt"], "y_ref": ref}})
    return rows
