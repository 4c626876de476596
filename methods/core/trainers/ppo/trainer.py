"""`trainer=ppo`: PPO with a critic, on the suite's generation engine and any `score(items, outputs)` scorer.

One update (`PPOTrainer.step`):
  1. rollout: `rollout_prompts` prompts (a fixed shuffle of the rows, the next slice each update, sharded
     over processes) -> one response each from the current policy through `HFEngine` (temperature,
     top_p, max_new_tokens; cut after EOS); the scorer scores the texts;
  2. no-grad forwards: log π_old and log π_ref (the initial policy; with LoRA the adapters disabled) of
     the response tokens from temperature-scaled logits, the critic's values;
  3. per-token rewards −β·KL (+ the score at the last response token, − missing_eos_penalty without EOS),
     GAE advantages and returns, advantages whitened over the batch;
  4. `ppo_epochs` passes over the batch in shuffled mini-batches: clipped policy loss, clipped value
     loss (one loss `pg + vf_coef·vf` for a value head on the policy, two optimisers for a separate
     critic), gradient clipping;
  5. the KL controller updates β (adaptive: TRL 0.11's rule), and one row of `updates.csv` is written.
The math is `methods.core.trainers.ppo.math` (pure functions, hand-tested).

The reported `kl` is k1 summed over a response's tokens (nats per response) whatever `kl_estimator` the
reward uses; the adaptive controller reads the same figure. Under several processes a SIGTERM stops
each rank on its own: on a cluster, stop the whole job (the launcher ends all ranks) and resume.

The class offers what the shared training stage (`methods/core/trainers/stage.py`) uses of a TRL
trainer: `train(resume_from_checkpoint)`, `state.log_history`, `model` (the policy), callbacks (SIGTERM
saves a checkpoint and stops), checkpoints `checkpoint-N/` (policy weights, `critic/`, optimizer.pt,
scheduler.pt with the KL controller, trainer_state.json). Every update's randomness (rollout seed,
mini-batch order) is a function of (seed, update, process), so a resumed run continues exactly as an
uninterrupted one. Under `accelerate launch` the actor and the critic are data parallel (DDP).
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import math as pymath
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from methods.core.trainers.ppo import math as M
from methods.core.trainers.ppo.modules import Actor, RolloutBatch, load_critic, make_batch, value_head

log = logging.getLogger("selfalign")

CSV_COLUMNS = ["step", "score", "kl", "kl_coef", "entropy", "response_length", "no_eos_share", "loss",
               "policy_loss", "value_loss", "clip_frac", "vf_clip_frac", "approx_kl", "explained_variance",
               "rollout_tokens_per_s", "rollout_gflop_per_s", "update_tokens_per_s", "update_gflop_per_s",
               "rollout_s", "update_s"]


class PPOTrainer:
    def __init__(self, model, args, train_dataset, processing_class, peft_config=None, scorer=None):
        from accelerate import Accelerator

        if scorer is None:
            raise ValueError("trainer ppo: no reward; train with spec.train(run, rows, stage, scorer=...)")
        self.args, self.tok, self.scorer, self.rows = args, processing_class, scorer, list(train_dataset)
        self.accelerator = Accelerator(cpu=args.use_cpu)
        self.is_deepspeed_enabled = False
        self.callbacks: list = []
        init_path = model.config._name_or_path
        _disable_dropout(model)  # rollout and update see the same function, so the first ratio is 1
        self._generation_config = _plain_sampling(model)  # restored when training ends
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
            self.ref = None  # the base under disabled adapters
        else:
            self.ref = copy.deepcopy(model).eval().requires_grad_(False).to(self.accelerator.device)
        self.model = model
        head = value_head(model.config.hidden_size) if args.critic == "head" else None
        self.actor = Actor(model, head)
        self.critic = None if head is not None else load_critic(
            args.critic_init or init_path, self.tok.pad_token_id, zero_head=args.critic_init is None)
        if self.critic is not None:
            _disable_dropout(self.critic)
        self.opt = self._optimizer([{"params": [p for p in model.parameters() if p.requires_grad],
                                     "lr": args.learning_rate}]
                                   + ([{"params": head.parameters(), "lr": args.critic_learning_rate}] if head else []))
        self.critic_opt = (self._optimizer([{"params": self.critic.parameters(), "lr": args.critic_learning_rate}])
                           if self.critic is not None else None)
        prepared = self.accelerator.prepare(self.actor, self.opt, *( [self.critic, self.critic_opt] if self.critic else []))
        self.actor_ddp, self.opt = prepared[0], prepared[1]
        if self.critic is not None:
            self.critic_ddp, self.critic_opt = prepared[2], prepared[3]
        self.kl_ctl = (M.AdaptiveKLController(args.kl_coef, args.kl_target, args.kl_horizon) if args.adaptive_kl
                       else M.FixedKLController(args.kl_coef))
        self.state = SimpleNamespace(global_step=0, max_steps=args.max_steps, log_history=[],
                                     is_world_process_zero=self.accelerator.is_main_process)
        # model FLOPs: 2·N a token forward, 6·N forward + backward (N: all parameters, tied embedding once)
        self.n_actor = sum(p.numel() for p in model.parameters())
        self.n_critic = sum(p.numel() for p in self.critic.parameters()) if self.critic is not None else 0
        self.order = torch.randperm(len(self.rows), generator=torch.Generator().manual_seed(args.seed)).tolist()

    # ---- the callback protocol the training stage uses ----------------------------------------------
    def add_callback(self, cb):
        self.callbacks.append(cb)

    def remove_callback(self, cb):
        self.callbacks.remove(cb)

    def _optimizer(self, groups):
        if self.args.optim == "adafactor":
            from transformers.optimization import Adafactor

            return Adafactor(groups, scale_parameter=False, relative_step=False, warmup_init=False)
        return torch.optim.AdamW(groups)

    # ---- the loop -----------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | None = None):
        t0 = time.perf_counter()
        if resume_from_checkpoint:
            self._load(Path(resume_from_checkpoint))
        try:
            return self._train(t0)
        finally:  # the saved policy keeps its own generation settings
            self.model.generation_config = self._generation_config

    def _train(self, t0: float):
        out = Path(self.args.output_dir)
        while self.state.global_step < self.args.max_steps:
            row = self.step(self.state.global_step)
            self.state.global_step += 1
            entry = {"step": self.state.global_step, **row}
            if self.state.global_step % self.args.logging_steps == 0 or self.state.global_step == self.args.max_steps:
                self.state.log_history.append(entry)
                log.info("ppo update %d/%d: score %.4f, kl %.4f, entropy %.3f, clip %.3f, value loss %.4f",
                         entry["step"], self.args.max_steps, row["score"], row["kl"], row["entropy"],
                         row["clip_frac"], row["value_loss"])
            if self.accelerator.is_main_process:
                _append_csv(out.parent / "updates.csv", entry)
            control = SimpleNamespace(should_save=self.state.global_step % self.args.save_steps == 0,
                                      should_training_stop=False)
            for cb in list(self.callbacks):
                cb.on_step_end(self.args, self.state, control)
            if control.should_save and self.state.global_step < self.args.max_steps:
                self._save(out / f"checkpoint-{self.state.global_step}")
            if control.should_training_stop:
                break
        history = self.state.log_history
        first, last = (history[0], history[-1]) if history else ({}, {})
        return SimpleNamespace(metrics={
            "train_runtime": time.perf_counter() - t0, "ppo_updates": self.state.global_step,
            "first_score": first.get("score"), "last_score": last.get("score"),
            "first_kl": first.get("kl"), "last_kl": last.get("kl"), "final_kl_coef": self.kl_ctl.value})

    def step(self, k: int) -> dict:
        a = self.args
        t0 = time.perf_counter()
        batch, scores, no_eos, n_gen = self._rollout(k)
        t_roll = time.perf_counter() - t0
        with torch.no_grad():
            old_logp, ref_logp, old_values = self._no_grad_forwards(batch)
            kl_tok = M.kl(old_logp, ref_logp, a.kl_estimator)
            beta = self.kl_ctl.value
            rewards = M.token_rewards(scores, kl_tok, batch.mask, beta, no_eos,
                                      a.missing_eos_penalty if a.missing_eos_penalty is not None else None)
            adv, returns = M.gae(rewards, old_values, batch.mask, a.gamma, a.lam)
            if a.whiten_advantages and batch.mask.sum() > 1:
                adv = torch.where(batch.mask.bool(), M.masked_whiten(adv, batch.mask), torch.zeros_like(adv))
        stats = self._update(k, batch, old_logp, old_values, adv, returns)
        seq_kl = (torch.where(batch.mask.bool(), M.kl_k1(old_logp, ref_logp), 0.0)).sum(1)
        mean_kl = self._mean(seq_kl.mean())
        self.kl_ctl.update(mean_kl, a.rollout_prompts * self.accelerator.num_processes)
        t_upd = time.perf_counter() - t0 - t_roll
        tok = batch.n_tokens  # prompt + response tokens of the rollout batch
        n_upd = tok * a.ppo_epochs  # tokens through a training pass
        # no-grad: policy + reference (+ critic); training: policy (+ critic), forward and backward
        flops = tok * (2 * (2 * self.n_actor + self.n_critic) + 6 * a.ppo_epochs * (self.n_actor + self.n_critic))
        return {"score": self._mean(scores.mean()), "kl": mean_kl, "kl_coef": beta,
                "response_length": self._mean(batch.mask.sum(1).mean()),
                "no_eos_share": self._mean(no_eos.float().mean()), **stats,
                "rollout_tokens_per_s": n_gen / t_roll if t_roll else None,
                # generated tokens only (prefill not counted): a lower bound on the FLOPs done
                "rollout_gflop_per_s": 2 * self.n_actor * n_gen / t_roll / 1e9 if t_roll else None,
                "update_tokens_per_s": n_upd / t_upd if t_upd else None,
                "update_gflop_per_s": flops / t_upd / 1e9 if t_upd else None,
                "rollout_s": round(t_roll, 2), "update_s": round(t_upd, 2)}

    def _mean(self, x: torch.Tensor) -> float:
        return self.accelerator.reduce(x.detach().float(), reduction="mean").item()

    def _rollout(self, k: int):
        from methods.core.generation import HFEngine, SamplingParams

        a, acc = self.args, self.accelerator
        n = a.rollout_prompts
        start = (k * n * acc.num_processes + acc.process_index * n)
        rows = [self.rows[self.order[(start + j) % len(self.rows)]] for j in range(n)]
        engine = HFEngine(acc.unwrap_model(self.actor).policy, self.tok, batch_size=a.generation_batch_size,
                          progress=False)
        self.actor.eval()
        params = SamplingParams(n=1, temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens,
                                seed=(a.seed * 100_003 + k) * 64 + acc.process_index)
        outs = [cs[0] for cs in engine.generate([r["prompt"] for r in rows], params)]
        prompt_ids = engine.encode([r["prompt"] for r in rows])
        dev = acc.device
        scores = torch.tensor([float(s) for s in self.scorer.score([r["item"] for r in rows], [c.text for c in outs])],
                              device=dev)
        no_eos = torch.tensor([not c.finished for c in outs], device=dev)
        batch = make_batch(prompt_ids, [list(c.token_ids) for c in outs], self.tok.pad_token_id).to(dev)
        return batch, scores, no_eos, sum(len(c.token_ids) for c in outs)

    def _no_grad_forwards(self, batch: RolloutBatch):
        a = self.args
        actor = self.accelerator.unwrap_model(self.actor)
        parts = {"old": [], "ref": [], "values": []}
        for s in range(0, batch.input_ids.size(0), a.forward_batch_size):
            mb = batch.rows(slice(s, s + a.forward_batch_size))
            logp, _, values = actor(mb, a.temperature)
            parts["old"].append(logp)
            parts["ref"].append(self._ref_logp(mb))
            parts["values"].append(values if values is not None else self.accelerator.unwrap_model(self.critic)(mb))
        return (torch.cat(parts["old"]), torch.cat(parts["ref"]), torch.cat(parts["values"]))

    def _ref_logp(self, mb: RolloutBatch):
        with self.accelerator.autocast():  # the same precision as the prepared actor's forward
            if self.ref is not None:
                return Actor(self.ref)(mb, self.args.temperature)[0]
            with self.model.disable_adapter():
                return Actor(self.model)(mb, self.args.temperature)[0]

    def _update(self, k, batch, old_logp, old_values, adv, returns) -> dict:
        a = self.args
        self.actor.train()
        B = batch.input_ids.size(0)
        g = torch.Generator().manual_seed(a.seed * 1_000_003 + k)
        sums, counts = {}, {}
        for _ in range(a.ppo_epochs):
            perm = torch.randperm(B, generator=g)
            for s in range(0, B, a.mini_batch_size):
                idx = perm[s : s + a.mini_batch_size]
                mb = batch.rows(idx)
                logp, entropy, values = self.actor_ddp(mb, a.temperature)
                pg, pg_stats = M.policy_loss(logp, old_logp[idx], adv[idx], mb.mask, a.clip_eps)
                if values is None:
                    values = self.critic_ddp(mb)
                vf, vf_stats = M.value_loss(values, old_values[idx], returns[idx], mb.mask, a.value_clip)
                if self.critic is None:
                    loss = pg + a.vf_coef * vf
                    self._backward_step(loss, self.opt, self.actor_ddp)
                else:
                    loss = pg
                    self._backward_step(pg, self.opt, self.actor_ddp)
                    self._backward_step(vf, self.critic_opt, self.critic_ddp)
                row = {"loss": loss, "policy_loss": pg, "value_loss": vf,
                       "entropy": M.masked_mean(entropy, mb.mask), **pg_stats, **vf_stats}
                for key, v in row.items():
                    v = float(v.detach()) if torch.is_tensor(v) else float(v)
                    if not pymath.isnan(v):  # explained variance is nan when a mini-batch's returns are constant
                        sums[key], counts[key] = sums.get(key, 0.0) + v, counts.get(key, 0) + 1
        keys = ("loss", "policy_loss", "value_loss", "entropy", "clip_frac", "vf_clip_frac", "approx_kl",
                "explained_variance")
        # means over this process's mini-batches, then over processes
        return {key: self._mean(torch.tensor(sums[key] / counts[key], device=self.accelerator.device))
                if counts.get(key) else None for key in keys}

    def _backward_step(self, loss, opt, module):
        self.accelerator.backward(loss)
        if self.args.max_grad_norm:
            self.accelerator.clip_grad_norm_(module.parameters(), self.args.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # ---- checkpoints --------------------------------------------------------------------------------
    def _save(self, d: Path) -> None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        tmp = d.with_name(d.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        actor = self.accelerator.unwrap_model(self.actor)
        actor.policy.save_pretrained(tmp)
        if actor.value_head is not None:
            torch.save(actor.value_head.state_dict(), tmp / "value_head.pt")
        if self.critic is not None:
            self.accelerator.unwrap_model(self.critic).classifier.save_pretrained(tmp / "critic")
        torch.save({"actor": self.opt.state_dict(),
                    "critic": self.critic_opt.state_dict() if self.critic_opt else None}, tmp / "optimizer.pt")
        torch.save({"kl_controller": self.kl_ctl.state_dict()}, tmp / "scheduler.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(
            {"global_step": self.state.global_step, "max_steps": self.state.max_steps,
             "log_history": self.state.log_history}))
        tmp.rename(d)
        kept = sorted((p for p in d.parent.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                      key=lambda p: int(p.name.split("-")[-1]))
        for old in kept[: -self.args.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)

    def _load(self, d: Path) -> None:
        from safetensors.torch import load_file

        actor = self.accelerator.unwrap_model(self.actor)
        weights = d / ("adapter_model.safetensors" if (d / "adapter_model.safetensors").exists() else "model.safetensors")
        state = load_file(weights)
        if weights.name.startswith("adapter"):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(actor.policy, state)
        else:
            actor.policy.load_state_dict(state, strict=False)  # tied embeddings are saved once
        if actor.value_head is not None:
            actor.value_head.load_state_dict(torch.load(d / "value_head.pt", map_location="cpu"))
        if self.critic is not None:
            critic = self.accelerator.unwrap_model(self.critic)
            critic.classifier.load_state_dict(load_file(d / "critic" / "model.safetensors"), strict=False)
        opt = torch.load(d / "optimizer.pt", weights_only=False, map_location="cpu")
        self.opt.load_state_dict(opt["actor"])
        if self.critic_opt is not None:
            self.critic_opt.load_state_dict(opt["critic"])
        self.kl_ctl.load_state_dict(torch.load(d / "scheduler.pt", weights_only=False, map_location="cpu")["kl_controller"])
        saved = json.loads((d / "trainer_state.json").read_text())
        self.state.global_step, self.state.log_history = saved["global_step"], saved["log_history"]


def _disable_dropout(module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def _plain_sampling(model) -> None:
    """Sample from π at temperature τ and nothing else: a model's generation config may carry logits
    processors (repetition_penalty, no_repeat_ngram_size, ...) that would make log π_old not the
    log-probability of the policy that drew the tokens."""
    from transformers import GenerationConfig

    g = model.generation_config
    model.generation_config = GenerationConfig(bos_token_id=g.bos_token_id, eos_token_id=g.eos_token_id,
                                               pad_token_id=g.pad_token_id)
    return g


def _append_csv(path: Path, entry: dict) -> None:
    """One row per update; a resumed run truncates rows past its checkpoint first (no duplicates)."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) < entry["step"]]
    rows.append({c: entry.get(c) for c in CSV_COLUMNS})
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
