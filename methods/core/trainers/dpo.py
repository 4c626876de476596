"""`trainer=dpo`: TRL's `DPOTrainer` with the per-pair loss as a small, replaceable hook.

TRL keeps tokenisation, collation, reference log-probs (precomputed, a separate model, or the
base under disabled LoRA adapters), optimisation and checkpoints. This subclass only re-states the
loss step so that a method changes one function, `pair_loss`, e.g. SPA's self-refined loss or
SSO's weighted loss:

    class MyTrainer(PreferenceDPOTrainer):
        def pair_loss(self, batch):
            return ...  # one loss per pair, shape [B]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trl import DPOTrainer

from methods.core.trainers.base import TrainerSpec, report_cut_rows

_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "weight"}


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
    def weights(self):
        """The rows' `weight` column, shape [B], or None when the rows have none."""
        return self.inputs.get("weight")

    @property
    def chosen_lengths(self):
        """Completion tokens of each chosen response, shape [B] (for per-token means)."""
        return self.inputs["completion_mask"].chunk(2, dim=0)[0].sum(dim=1)

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
    Rows with a `weight` column have their pair's loss multiplied by it (whatever the hook), then the
    batch loss is the mean over pairs.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_collator = _WithWeights(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "weight" not in self._signature_columns:  # else Trainer drops the column before collation
            self._signature_columns = [*self._signature_columns, "weight"]

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
        losses = self.pair_loss(batch)
        loss = (losses if batch.weights is None else losses * batch.weights.to(losses.dtype)).mean()

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


class _WithWeights:
    """TRL's preference collator, plus the rows' `weight` column as a float tensor when they have one."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples):
        import torch

        out = self.inner(examples)
        if examples and "weight" in examples[0]:
            out["weight"] = torch.tensor([float(e["weight"]) for e in examples])
        return out

    def __getattr__(self, name):  # TRL reads the collator's settings (pad_token_id, ...)
        return getattr(self.inner, name)


@dataclass
class DPOTrainerSpec(TrainerSpec):
    """`args` are `trl.DPOConfig` fields. Rows are {id, prompt (text or chat), chosen, rejected,
    optional weight (the pair's loss is multiplied by it; 1 when absent)}.

    Before training, the pairs TRL would drop or truncate at `args.max_length` are counted and named
    (`check_pair_lengths`); DPOConfig loss options that TRL applies inside the loss step this
    trainer replaces are refused (a variant loss is a `pair_loss` hook: `trainer_cls`)."""

    name: str = "dpo"

    def config_class(self):
        from trl import DPOConfig

        return DPOConfig

    def training_args(self, output_dir, **overrides):
        config = super().training_args(output_dir, **overrides)
        _check_loss_options(config)
        return config

    def dataset(self, tok, rows, args, stage):
        from datasets import Dataset

        conv = conversational_rows(rows)
        if any(r.get("weight") is not None for r in rows):  # the collator reads the column from every row
            for c, r in zip(conv, rows):
                c["weight"] = float(1.0 if r.get("weight") is None else r["weight"])
        report = check_pair_lengths(tok, rows, conv, args, stage)
        return Dataset.from_list(conv), {"n_pairs": len(rows) - report["n_pairs_dropped"], **report,
                                         "n_rows_dropped": report["n_pairs_dropped"]}

    def trainer_class(self):
        return PreferenceDPOTrainer


# DPOConfig options that act inside TRL's own loss step, which `PreferenceDPOTrainer` replaces:
# accepting them would silently train something else (a variant loss is a `pair_loss` hook).
_LOSS_OPTIONS = {"loss_type": ["sigmoid"], "loss_weights": None, "ld_alpha": None, "use_weighting": False,
                 "f_divergence_type": "reverse_kl"}


def _check_loss_options(config) -> None:
    for name, default in _LOSS_OPTIONS.items():
        value = getattr(config, name, default)
        if value != default and not (name == "loss_type" and value == "sigmoid"):
            raise ValueError(
                f"args.{name}={value!r} is not supported: the suite's DPO loss is the `pair_loss` hook "
                f"(sigmoid DPO with label_smoothing); write a hook for another loss"
            )


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
            f"trainers.policy.args.max_length={max_len} tokens, leaving no response token to train on (the longest pair, "
            f"{ids[k]!r}: {max(lengths[k][1:])} tokens, {lengths[k][0]} of them prompt; the shortest prompt: "
            f"{shortest} tokens); raise trainers.policy.args.max_length or shorten the prompts")
    return report_cut_rows(report, stage, ids, given, "pair", [
        ("dropped", dropped, f"the prompt alone fills max_length={max_len} tokens"),
        ("truncated", truncated, f"prompt + response cut to max_length={max_len} tokens")])
