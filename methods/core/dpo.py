"""The shared DPO trainer: TRL's `DPOTrainer` with the per-pair loss as a small, replaceable hook.

TRL keeps tokenisation, collation, reference log-probs (precomputed, a separate model, or the
base under disabled LoRA adapters), optimisation and checkpoints. This subclass only re-states the
loss step so that a method changes one function, `pair_loss`, e.g. SPA's self-refined loss or
SSO's weighted loss:

    class MyTrainer(PreferenceDPOTrainer):
        def pair_loss(self, batch):
            return ...  # one loss per pair, shape [B]
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl import DPOTrainer

from methods.core.io import atomic_write_json

log = logging.getLogger(__name__)

_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}


@dataclass
class PairBatch:
    """What a loss hook sees for one batch of B preference pairs (all tensors have shape [B])."""

    chosen_logps: Any  # log π_θ(y_w|x), summed over completion tokens
    rejected_logps: Any  # log π_θ(y_l|x)
    ref_chosen_logps: Any  # log π_ref(y_w|x)
    ref_rejected_logps: Any  # log π_ref(y_l|x)
    inputs: dict  # the collated batch: chosen rows first, then rejected rows
    outputs: Any  # the policy forward's output (per-token `log_probs`, `entropy`, ...)

    @property
    def chosen_logratios(self):
        return self.chosen_logps - self.ref_chosen_logps

    @property
    def rejected_logratios(self):
        return self.rejected_logps - self.ref_rejected_logps


class PreferenceDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is `pair_loss(batch)`; the default is the sigmoid DPO loss.

    Default loss, per pair, with z = (log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))
    and ε = `label_smoothing` (conservative DPO):
        loss = −(1 − ε)·log σ(β·z) − ε·log σ(−β·z)
    """

    def pair_loss(self, batch: PairBatch):
        import torch.nn.functional as F

        z = batch.chosen_logratios - batch.rejected_logratios
        eps = self.label_smoothing
        return -(1 - eps) * F.logsigmoid(self.beta * z) - eps * F.logsigmoid(-self.beta * z)

    @property
    def progress(self) -> float:
        """Fraction of the optimisation steps done (0 at the start, 1 at the end)."""
        return self.state.global_step / max(self.state.max_steps, 1)

    def _compute_loss(self, model, inputs, return_outputs):
        import torch

        mode = "train" if self.model.training else "eval"
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        chosen_logps, rejected_logps = outputs.log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(self.ref_model or self.model, inputs)
        batch = PairBatch(chosen_logps, rejected_logps, ref_chosen, ref_rejected, inputs, outputs)
        loss = self.pair_loss(batch).mean()

        if mode == "train":
            self._total_train_tokens += int(inputs["attention_mask"].sum().item())
        with torch.no_grad():
            m = self._metrics[mode]
            rc, rr = self.beta * batch.chosen_logratios, self.beta * batch.rejected_logratios
            m["num_tokens"] = [self._total_train_tokens]
            m["rewards/chosen"].append(rc.mean().item())
            m["rewards/rejected"].append(rr.mean().item())
            m["rewards/accuracies"].append((rc > rr).float().mean().item())
            m["rewards/margins"].append((rc - rr).mean().item())
            m["logps/chosen"].append(chosen_logps.mean().item())
            m["logps/rejected"].append(rejected_logps.mean().item())
        return (loss, outputs) if return_outputs else loss


def dpo_args(trainer_cfg, output_dir: str | Path, **overrides):
    """`DPOConfig` from the `trainer` config group's `args` (TRL's own field names)."""
    import torch
    from omegaconf import OmegaConf
    from trl import DPOConfig

    args = OmegaConf.to_container(trainer_cfg.args, resolve=True)
    args.update(overrides)
    args.setdefault("use_cpu", not torch.cuda.is_available())
    config = DPOConfig(output_dir=str(output_dir), **args)
    _check_loss_options(config)
    return config


# DPOConfig options that act inside TRL's own loss step, which `PreferenceDPOTrainer` replaces:
# accepting them would silently train something else (a variant loss is a `pair_loss` hook).
_LOSS_OPTIONS = {"loss_type": ["sigmoid"], "loss_weights": None, "ld_alpha": None, "use_weighting": False,
                 "f_divergence_type": "reverse_kl"}


def _check_loss_options(config) -> None:
    for name, default in _LOSS_OPTIONS.items():
        value = getattr(config, name, default)
        if value != default and not (name == "loss_type" and value == "sigmoid"):
            raise ValueError(
                f"trainer.args.{name}={value!r} is not supported: the suite's DPO loss is the `pair_loss` hook "
                f"(sigmoid DPO with label_smoothing); write a hook for another loss"
            )


def lora_config(trainer_cfg):
    if not trainer_cfg.get("lora"):
        return None
    from omegaconf import OmegaConf
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **OmegaConf.to_container(trainer_cfg.lora, resolve=True))


def conversational_rows(pairs: list[dict]) -> list[dict]:
    """TRL's conversational preference rows from {prompt (text or chat), chosen, rejected} pairs."""
    return [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}] if isinstance(p["prompt"], str) else p["prompt"],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in pairs
    ]


CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint-N that a save finished (state, optimizer, scheduler and weights present,
    trainer_state.json readable); a half-written newer one (killed mid-save) is skipped and removed."""
    import json

    if not ckpt_dir.exists():
        return None
    found = sorted((p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for p in found:
        complete = all((p / f).is_file() for f in CHECKPOINT_FILES) and any((p / f).is_file() for f in WEIGHT_FILES)
        try:
            complete = complete and bool(json.loads((p / "trainer_state.json").read_text()))
        except (OSError, ValueError):
            complete = False
        if complete:
            return str(p)
        log.warning("checkpoint %s is incomplete (killed while saving?): removed, resuming from an earlier one", p)
        shutil.rmtree(p, ignore_errors=True)
    return None


def save_on_sigterm(trainer):
    """While training: SIGTERM (SLURM pre-emption) makes the trainer save a checkpoint at the end of
    the current step and stop; the context yields a function telling whether that happened."""
    import signal
    from contextlib import contextmanager

    from transformers import TrainerCallback

    got = {"term": False}

    class _Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if got["term"]:
                control.should_save = True
                control.should_training_stop = True
            return control

    @contextmanager
    def ctx():
        def handler(signum, frame):
            got["term"] = True
            log.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")

        cb = _Stop()
        trainer.add_callback(cb)
        old = signal.signal(signal.SIGTERM, handler)
        try:
            yield lambda: got["term"]
        finally:
            signal.signal(signal.SIGTERM, old)
            trainer.remove_callback(cb)

    return ctx()


# Pair ids named in the log and in train_metrics.json (the counts are always complete).
FIRST_IDS = 20


def pair_token_lengths(tok, rows: list[dict]) -> list[tuple[int, int, int]]:
    """(prompt, prompt+chosen, prompt+rejected) token lengths of each conversational row, tokenised as
    TRL 1.16 does (`DPOTrainer._prepare_dataset`: the chat template of the prompt with the generation
    prompt, and of prompt + each response; the prompt ends where the two renderings diverge)."""
    from methods.core.generation import chat_ids
    from methods.core.scoring import common_prefix

    prompts = chat_ids(tok, [r["prompt"] for r in rows], add_generation_prompt=True)
    chosen = chat_ids(tok, [r["prompt"] + r["chosen"] for r in rows])
    rejected = chat_ids(tok, [r["prompt"] + r["rejected"] for r in rows])
    return [(min(common_prefix(p, c), common_prefix(p, r)), len(c), len(r))
            for p, c, r in zip(prompts, chosen, rejected)]


def check_pair_lengths(tok, pairs: list[dict], rows: list[dict], args, stage: str) -> dict:
    """Count, log and name the pairs TRL will drop or truncate at `args.max_length`; refuse when none is left.

    TRL 1.16 does this silently: with truncation_mode keep_start it filters out a pair whose prompt alone
    has >= max_length tokens (`DPOTrainer._prepare_dataset`), and its collator cuts prompt+response to
    max_length (`DataCollatorForPreference.torch_call`); with every pair dropped it fails later inside
    torch.cat. Returns the counts for train_metrics.json.
    """
    max_len, given = args.max_length, len(pairs)
    report = {"n_pairs_given": given, "n_pairs_dropped": 0, "n_pairs_truncated": 0}
    if max_len is None:
        return report
    lengths = pair_token_lengths(tok, rows)
    ids = [p.get("id", k) for k, p in enumerate(pairs)]
    keep_start = args.truncation_mode == "keep_start"  # keep_end keeps the response's end: never dropped
    dropped = [k for k, (n, _, _) in enumerate(lengths) if keep_start and n >= max_len]
    gone = set(dropped)
    truncated = [k for k, (_, c, r) in enumerate(lengths) if k not in gone and max(c, r) > max_len]
    if len(dropped) == given:
        k = max(range(given), key=lambda k: max(lengths[k][1:]))
        shortest = min(n for n, _, _ in lengths)
        raise ValueError(
            f"stage {stage}: all {given} preference pairs would be dropped: each prompt alone has at least "
            f"trainer.args.max_length={max_len} tokens, leaving no response token to train on (the longest pair, "
            f"{ids[k]!r}: {max(lengths[k][1:])} tokens, {lengths[k][0]} of them prompt; the shortest prompt: "
            f"{shortest} tokens); raise trainer.args.max_length or shorten the prompts")
    for what, found, why in (("dropped", dropped, "the prompt alone fills max_length"),
                             ("truncated", truncated, "prompt + response cut to max_length")):
        if found:
            named = [ids[k] for k in found[:FIRST_IDS]]
            log.warning("stage %s: %d of %d pairs %s (%s=%d tokens): ids %s%s", stage, len(found), given, what,
                        why, max_len, named[:5], " ..." if len(found) > 5 else "")
            report[f"n_pairs_{what}"] = len(found)
            report[f"{what}_pair_ids"] = named
    return report


def whole_run_loss(log_history: list[dict]) -> float | None:
    """The step-weighted mean of the logged training losses over the whole log history.

    Each logged `loss` is the mean over the steps since the previous log, so it weighs (its step − the
    previous log's step). After a resume the history restored from the checkpoint holds the earlier
    steps' logs too, whereas TRL's `train_loss` averages only the steps run since the resume. Steps after
    the last log are not covered (logging_steps dividing the number of steps covers all); None when no
    loss was logged (fewer steps than logging_steps).
    """
    total = weight = 0.0
    previous = 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            w = entry["step"] - previous
            total, weight, previous = total + entry["loss"] * w, weight + w, entry["step"]
    return total / weight if weight else None


def plot_training_curve(log_history: list[dict], path: Path, title: str) -> None:
    """Loss and (when logged) rewards/margins per step as a PNG, written atomically. Matplotlib's
    object API with the Agg canvas: no pyplot, so no global backend is switched in the caller."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = {key: [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
              for key in ("loss", "rewards/margins")}
    shown = [k for k, v in series.items() if v] or ["loss"]
    fig = Figure(figsize=(5 * len(shown), 3.5))
    FigureCanvasAgg(fig)
    for ax, key in zip(fig.subplots(1, len(shown), squeeze=False)[0], shown):
        if series[key]:
            steps, values = zip(*series[key])
            ax.plot(steps, values, marker="o", markersize=3)
        else:
            ax.text(0.5, 0.5, "no step logged\n(fewer steps than logging_steps)", ha="center", va="center",
                    transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel(key)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".partial")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)


def train_dpo(
    run,
    pairs: list[dict],
    stage: str = "train",
    init_path: str | None = None,
    trainer_cls: type[PreferenceDPOTrainer] = PreferenceDPOTrainer,
    **arg_overrides,
) -> str:
    """Train DPO on `pairs` ({prompt, chosen, rejected}) from `init_path` (default: the base model).

    The stage `run.dir/<stage>` keeps TRL checkpoints under `checkpoints/` and resumes from the last
    one after an interruption; the trained policy (LoRA adapters merged) is saved to `policy/`, with
    `train_metrics.json` (`n_pairs` trained on; `n_pairs_given/dropped/truncated` at max_length) and
    `train_curve.png` beside it. Returns the policy directory.
    """
    import torch
    from datasets import Dataset

    if not pairs:
        raise ValueError(f"stage {stage}: no preference pairs to train on (all samples tied, or an empty split)")

    def work(d: Path) -> None:
        if (d / "policy").exists():  # killed after the policy's atomic rename, before the stage was marked done
            shutil.rmtree(d / "checkpoints", ignore_errors=True)
            return
        path = init_path or run.base_model_path
        model, tok = run.model_source.load(path, for_generation=False)
        run.release()  # the generation copy is not needed while training
        rows = conversational_rows(pairs)
        ckpt_dir = d / "checkpoints"
        args = dpo_args(run.cfg.trainer, ckpt_dir, **arg_overrides)
        lengths = check_pair_lengths(tok, pairs, rows, args, stage)
        trainer = trainer_cls(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            peft_config=lora_config(run.cfg.trainer),
        )
        last = last_complete_checkpoint(ckpt_dir)
        if last:
            log.info("stage %s: resuming from %s", stage, last)
        with save_on_sigterm(trainer) as stopped:
            result = trainer.train(resume_from_checkpoint=last)
        if stopped():
            raise SystemExit(f"stage {stage}: stopped by SIGTERM after saving a checkpoint; re-run the same "
                             "command to resume")
        final = trainer.model
        if hasattr(final, "merge_and_unload"):
            final = final.merge_and_unload()
        tmp = d / "policy.partial"
        final.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        history = trainer.state.log_history  # restored from the checkpoint on a resume: the whole run
        plot_training_curve(history, d / "train_curve.png", f"{run.dir.name}: stage {stage}")
        # train_loss is TRL's: the mean over the steps run since the last resume only
        atomic_write_json(d / "train_metrics.json", {
            **result.metrics, "train_loss_whole_run": whole_run_loss(history),
            "n_pairs": len(pairs) - lengths["n_pairs_dropped"], **lengths, "log": history})
        tmp.rename(d / "policy")
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # optimizer states are large; the policy is saved
        del trainer, model, final
        torch.cuda.empty_cache() if torch.cuda.is_available() else None

    return str(run.stage(stage, work) / "policy")
