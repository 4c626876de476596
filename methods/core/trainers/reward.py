"""`trainer=reward`: TRL's `RewardTrainer` (a one-logit sequence classifier) with the per-pair loss as a
small, replaceable hook.

TRL keeps tokenisation (the chat template of prompt + chosen and of prompt + rejected), the filter at
`max_length`, collation (chosen rows first, then rejected rows, right-padded), optimisation and
checkpoints. This subclass only re-states the loss step, so that a method changes one function,
`reward_loss`. E.g. SER's paper form, a hinge on the reward gap with margin Δ:

    class HingeRewardTrainer(PreferenceRewardTrainer):
        delta = 1.0

        def reward_loss(self, batch):
            # max(0, Δ − (r_c − r_r)), one loss per pair, shape [B]
            return (self.delta - (batch.chosen_rewards - batch.rejected_rewards)).clamp(min=0)

    spec.train(run, rows, "rm", trainer_cls=HingeRewardTrainer)

The saved `reward_model/` is an `AutoModelForSequenceClassification` directory with one label, which
`methods.judges.reward_model.RewardModelJudge` loads as it is.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from trl import RewardTrainer

from methods.core.trainers.base import TrainerSpec
from methods.core.trainers.base import FIRST_IDS
from methods.core.trainers.dpo import conversational_rows

log = logging.getLogger(__name__)


@dataclass
class RewardBatch:
    """What a loss hook sees for one batch of B preference pairs."""

    chosen_rewards: Any  # r(x, y_w): the classifier's logit at the chosen row's last token, shape [B]
    rejected_rewards: Any  # r(x, y_l), shape [B]
    margin: Any  # the rows' `margin` column, shape [B], or None when the rows have none
    inputs: dict  # the collated batch: input_ids/attention_mask with the B chosen rows first, then B rejected


class PreferenceRewardTrainer(RewardTrainer):
    """RewardTrainer whose loss is `reward_loss(batch)`; the default is TRL's Bradley–Terry loss.

    Default loss, per pair, with r_c = r(x, y_w), r_r = r(x, y_l) and m the pair's margin (0 without one):
        loss = −log σ(r_c − r_r − m)
    i.e. the negative log-likelihood of "y_w beats y_l" under Bradley–Terry, P(y_w ≻ y_l) = σ(r_c − r_r),
    with the pair asked to win by at least m. The batch loss is the mean over pairs, plus TRL's
    `center_rewards_coefficient`·mean((r_c + r_r)²) when that option is set (as TRL does).
    """

    def reward_loss(self, batch: RewardBatch):
        import torch.nn.functional as F

        gap = batch.chosen_rewards - batch.rejected_rewards
        if batch.margin is not None:
            gap = gap - batch.margin
        return -F.logsigmoid(gap)

    @property
    def progress(self) -> float:
        """Fraction of the optimisation steps done (0 at the start, 1 at the end)."""
        return self.state.global_step / max(self.state.max_steps, 1)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        mode = "train" if self.model.training else "eval"
        # TRL hands `margin` to the model as well; the model needs only the token inputs
        model_kwargs = {k: v for k, v in inputs.items() if k != "margin"}
        model_kwargs["use_cache"] = False
        outputs = model(**model_kwargs)
        chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        batch = RewardBatch(chosen, rejected, inputs.get("margin"), inputs)
        loss = self.reward_loss(batch).mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)

        # TRL's metrics, same names
        m = self._metrics[mode]
        if mode == "train":
            n = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += n // self._tp_size
        m["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            rewards = self.accelerator.gather(outputs.logits)
            m["min_reward"].append(rewards.min().item())
            m["mean_reward"].append(rewards.mean().item())
            m["max_reward"].append(rewards.max().item())
            m["accuracy"].append(self.accelerator.gather_for_metrics((chosen > rejected).float().mean()).mean().item())
            m["margin"].append(self.accelerator.gather_for_metrics((chosen - rejected).mean()).mean().item())
        return (loss, outputs) if return_outputs else loss


@dataclass
class RewardTrainerSpec(TrainerSpec):
    """`args` are `trl.RewardConfig` fields. Rows are {id, prompt (text or chat), chosen, rejected,
    optional margin}; the model is the init weights as a one-logit sequence classifier (a causal LM's
    directory gets a new `score` head, seeded with `args.seed`).

    `template` (null = the model's chat template) renders a pair as plain text instead, e.g. SER's
    `"Question: {prompt}\n\nAnswer: {response}"`: TRL's standard format, the text up to `{response}`
    as the prompt, the response after it, and TRL appends the EOS token. `RewardModelJudge` with the
    same `template` scores exactly the tokens the model was trained on.

    Before training, the pairs TRL would drop at `args.max_length` are counted and named: TRL 1.16
    filters out a pair whose prompt + chosen or prompt + rejected has more than max_length tokens (it
    does not truncate); with every pair dropped it is refused here, before any training."""

    name: str = "reward"
    template: str | None = None  # null = chat template; else text with {prompt} and, at its end, {response}
    output_name = "reward_model"

    def validate(self, where: str = "trainer") -> None:
        if self.template is not None:
            check_template(self.template, f"{where}.template")
        super().validate(where)

    def record(self) -> dict:
        return {**super().record(), "template": self.template}

    def config_class(self):
        from trl import RewardConfig

        return RewardConfig

    def load(self, run, path: str):
        import torch
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained(path)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        transformers.set_seed(int(self.arg("seed", 42)))  # the new head is random: make it the seed's
        dtype = getattr(torch, getattr(run.model_source, "dtype", None) or "float32")
        with _quiet_new_head():
            model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        model.config.pad_token_id = tok.pad_token_id  # the classifier reads the last non-pad token
        return model, tok

    def lora_config(self):
        import dataclasses

        config = super().lora_config()
        if config is None or self.lora.get("task_type"):
            return config
        # PEFT then wraps it as PeftModelForSequenceClassification, which trains the `score` head in full
        return dataclasses.replace(config, task_type="SEQ_CLS")

    def dataset(self, tok, rows, args, stage):
        from datasets import Dataset

        conv = conversational_rows(rows) if self.template is None else text_rows(rows, self.template)
        if any(r.get("margin") is not None for r in rows):  # TRL's collator reads the column from every row
            for c, r in zip(conv, rows):
                c["margin"] = float(r.get("margin") or 0.0)
        report = check_reward_lengths(tok, rows, conv, args, stage)
        return Dataset.from_list(conv), {"n_pairs": len(rows) - report["n_pairs_dropped"], **report,
                                         "n_rows_dropped": report["n_pairs_dropped"]}

    def trainer_class(self):
        return PreferenceRewardTrainer


def check_template(template: str, where: str) -> None:
    """A reward-model text template: `{prompt}` somewhere, `{response}` once, at the very end."""
    if not isinstance(template, str) or "{prompt}" not in template or not template.endswith("{response}") \
            or template.count("{response}") != 1:
        raise ValueError(f"{where}={template!r}: a text with {{prompt}} and ending with {{response}} "
                         "(e.g. 'Question: {prompt}\\n\\nAnswer: {response}'), or null for the chat template")


ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}


def render_prompt(template: str, prompt) -> str:
    """The template's text before `{response}`, for one prompt. A chat of one user turn gives that turn;
    a longer one its whole dialogue as an HH-RLHF transcript ("Human: …\n\nAssistant: …\n\nHuman: …"),
    so the reward model sees the history it is judging the answer in."""
    if not isinstance(prompt, str):
        turns = list(prompt)
        prompt = turns[0]["content"] if len(turns) == 1 and turns[0]["role"] == "user" else "\n\n".join(
            f"{ROLE_NAMES.get(t['role'], t['role'])}: {t['content']}" for t in turns)
    return template[: -len("{response}")].replace("{prompt}", prompt)


def text_rows(pairs: list[dict], template: str) -> list[dict]:
    """TRL's standard-format preference rows: the rendered prompt, the bare responses."""
    return [{"prompt": render_prompt(template, p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]}
            for p in pairs]


def _quiet_new_head():
    """TRL's scoped silencing of "score.weight newly initialized / lm_head.weight unexpected" when a
    causal LM's directory loads as a sequence classifier (both expected); a no-op if TRL moves it."""
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning
    except ImportError:
        return contextlib.nullcontext()
    return suppress_seqcls_warning()


def check_reward_lengths(tok, pairs: list[dict], rows: list[dict], args, stage: str) -> dict:
    """Count, log and name the pairs TRL 1.16's `RewardTrainer._prepare_dataset` drops: prompt + chosen
    or prompt + rejected longer than `args.max_length` tokens (chat template, no generation prompt);
    refuse when none is left. Returns the counts for train_metrics.json."""
    from methods.core.generation import chat_ids

    max_len, given = args.max_length, len(pairs)
    report = {"n_pairs_given": given, "n_pairs_dropped": 0}
    if max_len is None:
        return report
    if rows and isinstance(rows[0]["prompt"], str):  # standard format: TRL appends EOS, tokenises the text
        def ids(key):
            return [tok(r["prompt"] + r[key] + tok.eos_token)["input_ids"] for r in rows]
        chosen, rejected = ids("chosen"), ids("rejected")
    else:
        chosen = chat_ids(tok, [r["prompt"] + r["chosen"] for r in rows])
        rejected = chat_ids(tok, [r["prompt"] + r["rejected"] for r in rows])
    lengths = [max(len(c), len(r)) for c, r in zip(chosen, rejected)]
    ids = [p.get("id", k) for k, p in enumerate(pairs)]
    dropped = [k for k, n in enumerate(lengths) if n > max_len]
    if len(dropped) == given:
        raise ValueError(
            f"stage {stage}: all {given} preference pairs would be dropped: each has prompt + response longer "
            f"than trainers.reward.args.max_length={max_len} tokens (TRL's RewardTrainer filters them out, it does "
            f"not truncate; the shortest pair has {min(lengths)} tokens); raise trainers.reward.args.max_length or "
            "shorten the texts")
    if dropped:
        named = [ids[k] for k in dropped[:FIRST_IDS]]
        log.warning("stage %s: %d of %d pairs dropped (prompt + response over max_length=%d tokens): ids %s%s",
                    stage, len(dropped), given, max_len, named[:5], " ..." if len(dropped) > 5 else "")
        report["n_pairs_dropped"] = len(dropped)
        report["dropped_pair_ids"] = named
    return report
