"""The PPO trainer on the tiny model: updates lower the PPO loss on a fixed batch, a killed run resumes
to the same weights as an uninterrupted one, and both critics train through the shared stage."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from omegaconf import OmegaConf

pytestmark = pytest.mark.usefixtures("one_thread")

ROWS = [{"id": f"p{k}", "prompt": f"Say something about the number {k}.", "item": {"k": k}} for k in range(8)]


class LengthScorer:
    """Rewards longer answers (random bytes vary in length): a signal the tiny model can follow."""

    name = "length"

    def score(self, items, outputs):
        return [min(len(o), 40) / 40 for o in outputs]


ARGS = {"max_steps": 4, "rollout_prompts": 4, "ppo_epochs": 2, "mini_batch_size": 2, "forward_batch_size": 4,
        "max_new_tokens": 8, "learning_rate": 1e-3, "critic_learning_rate": 1e-3, "save_steps": 2, "seed": 0}


def _run(tmp_path, tiny):
    from methods.core.run import Run

    return Run(OmegaConf.create({"seed": 0}), tmp_path / "run", tiny[0], data=None, judge=None, method=None,
               cache_dir=tmp_path / "cache")


def _spec(**args):
    from methods.core.trainers.ppo.spec import PPOTrainerSpec

    return PPOTrainerSpec(args={**ARGS, **args})


def _trainer(tiny, tmp_path, **args):
    from methods.core.trainers.ppo.trainer import PPOTrainer

    spec = _spec(**args)
    model, tok = tiny[0].load(for_generation=False)
    return PPOTrainer(model, spec.training_args(tmp_path / "ckpt"), spec.dataset(tok, ROWS, None, "t")[0], tok,
                      scorer=LengthScorer())


@pytest.mark.parametrize("critic", ["separate", "head"])
def test_updates_lower_the_ppo_loss_on_a_fixed_batch(tiny, tmp_path, critic):
    """Two updates (ppo_epochs 2 each) on one rollout batch: the clipped policy loss and the value loss
    recomputed on that batch after the updates are below their values before (the objective being
    optimised is the one measured; with ratio 1 at the start, the policy loss is −mean(advantages) = 0
    after whitening, so "lower" means the updates raised the likelihood of positive-advantage tokens)."""
    from methods.core.trainers.ppo import math as M

    tr = _trainer(tiny, tmp_path, critic=critic)
    batch, scores, no_eos, _ = tr._rollout(0)
    with torch.no_grad():
        old_logp, ref_logp, old_values = tr._no_grad_forwards(batch)
        rewards = M.token_rewards(scores, M.kl_k1(old_logp, ref_logp), batch.mask, 0.05)
        adv, ret = M.gae(rewards, old_values, batch.mask, 1.0, 0.95)
        adv = torch.where(batch.mask.bool(), M.masked_whiten(adv, batch.mask), torch.zeros_like(adv))

    def losses():
        with torch.no_grad():
            logp, _, values = tr.actor(batch, tr.args.temperature)
            values = values if values is not None else tr.critic(batch)
            return (M.policy_loss(logp, old_logp, adv, batch.mask, 0.2)[0].item(),
                    M.value_loss(values, old_values, ret, batch.mask, 10.0)[0].item())

    pg0, vf0 = losses()
    for k in range(2):
        tr._update(k, batch, old_logp, old_values, adv, ret)
    pg1, vf1 = losses()
    assert pg1 < pg0 - 1e-4 and vf1 < vf0


def test_lora_policy_with_the_base_as_reference(tiny, tmp_path):
    """With LoRA the reference is the base under disabled adapters (no copy); the saved policy is merged."""
    spec = _spec(max_steps=1)
    spec.lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    run = _run(tmp_path, tiny)
    policy = spec.train(run, ROWS, "ppo_lora", scorer=LengthScorer())
    assert (run.dir / "ppo_lora" / "policy" / "model.safetensors").exists()
    assert not list((run.dir / "ppo_lora" / "policy").glob("adapter_*"))
    assert policy.endswith("policy")


def test_spec_trains_through_the_shared_stage_and_logs_every_update(tiny, tmp_path):
    spec = _spec()
    run = _run(tmp_path, tiny)
    policy = spec.train(run, ROWS, "ppo", scorer=LengthScorer())
    d = run.dir / "ppo"
    assert policy == str(d / "policy") and (d / "policy" / "model.safetensors").exists()
    with open(d / "updates.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["kl"]) == pytest.approx(float(r["kl"])) for r in rows)  # numbers, not blanks
    m = json.loads((d / "train_metrics.json").read_text())
    assert m["ppo_updates"] == 4 and m["first_score"] == float(rows[0]["score"]) and m["trainer"] == "ppo"
    assert not (d / "checkpoints").exists() and (d / "train_curve.png").exists()
    with pytest.raises(ValueError, match="scorer"):
        spec.train(run, ROWS, "ppo2")


class _Crash:
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt("killed")


def _train_killed_at(step: int, run, monkeypatch) -> None:
    """Train the default spec in `run`, the process "killed" at the end of update `step`."""
    from methods.core.trainers.ppo import trainer as T

    original = T.PPOTrainer.__init__

    def crashing(self, *a, **kw):
        original(self, *a, **kw)
        self.add_callback(_Crash(step))

    monkeypatch.setattr(T.PPOTrainer, "__init__", crashing)
    with pytest.raises(KeyboardInterrupt):
        _spec().train(run, ROWS, "ppo", scorer=LengthScorer())
    monkeypatch.setattr(T.PPOTrainer, "__init__", original)


def test_a_killed_run_resumes_to_the_same_weights(tiny, tmp_path, monkeypatch):
    """4 updates straight through vs. killed after update 3 (checkpoint-2 saved at update 2) and re-run:
    the rerun resumes from checkpoint-2 and ends with identical weights and the same updates.csv."""
    from safetensors.torch import load_file


    straight = _run(tmp_path / "a", tiny)
    pa = _spec().train(straight, ROWS, "ppo", scorer=LengthScorer())

    killed = _run(tmp_path / "b", tiny)
    _train_killed_at(3, killed, monkeypatch)
    assert (killed.dir / "ppo" / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    pb = _spec().train(killed, ROWS, "ppo", scorer=LengthScorer())
    a, b = load_file(f"{pa}/model.safetensors"), load_file(f"{pb}/model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0
    timing = ("rollout_tokens_per_s", "update_tokens_per_s", "rollout_gflop_per_s", "update_gflop_per_s",
              "rollout_s", "update_s")

    def table(run):
        with open(run.dir / "ppo" / "updates.csv") as f:
            return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(f)]

    assert table(killed) == table(straight) and len(table(killed)) == 4  # no duplicated or missing update


@pytest.mark.parametrize("trainer", ["ppo", "grpo"])
def test_method_rl_end_to_end_on_the_tiny_model(tmp_path, trainer):
    """`method=rl` through the pipeline: the gold labeller is the reward, the metrics carry the first and
    last update's mean reward (and PPO's KL); `trainer@trainers.rl=grpo` swaps in TRL's GRPO."""
    from experiments.pipeline import build_run, execute
    from tests.test_configs import compose

    small = {"ppo": ["trainers.rl.args.max_steps=2", "trainers.rl.args.rollout_prompts=4",
                     "trainers.rl.args.mini_batch_size=2", "trainers.rl.args.max_new_tokens=8",
                     "trainers.rl.args.ppo_epochs=1"],
             "grpo": ["+trainers.rl.args.max_steps=2", "trainers.rl.args.per_device_train_batch_size=2",
                      "trainers.rl.args.num_generations=2", "trainers.rl.args.max_completion_length=8"]}[trainer]
    cfg = compose(["model=tiny_llama", "method=rl", f"trainer@trainers.rl={trainer}", *small, "data.n_labelled=8",
                   "data.n_eval=4", "eval.max_new_tokens=8", "generation.progress=false",
                   "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge",
                   f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"])
    m = execute(build_run(cfg))
    assert m["rl_trainer"] == trainer and m["n_prompts"] == 8 and m["n_updates"] == 2
    assert isinstance(m["first_score"], float) and isinstance(m["last_score"], float)
    if trainer == "ppo":
        assert m["first_kl"] == pytest.approx(0.0, abs=1e-4)  # the first rollout comes from the reference itself


def test_checkpoints_of_other_inputs_are_not_resumed(tiny, tmp_path, monkeypatch, caplog):
    """A stage killed with one config, re-run in the same folder with another (here another learning rate):
    its checkpoints are removed, not resumed, and the result is the other config's own."""
    import logging

    from safetensors.torch import load_file


    run = _run(tmp_path / "b", tiny)
    _train_killed_at(3, run, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="selfalign"):
        pb = _spec(learning_rate=5e-4).train(run, ROWS, "ppo", scorer=LengthScorer())
    assert "made from other inputs" in caplog.text
    pa = _spec(learning_rate=5e-4).train(_run(tmp_path / "a", tiny), ROWS, "ppo", scorer=LengthScorer())
    a, b = load_file(f"{pa}/model.safetensors"), load_file(f"{pb}/model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0
