"""`trainer=sft`: TRL's `SFTTrainer` on conversational prompt-completion rows.

Rows {id, prompt (text or chat), completion} become TRL's conversational prompt-completion rows
({prompt: [user turn(s)], completion: [assistant turn]}). TRL 1.16 tokenises the prompt through the
chat template with the generation prompt and prompt + completion without it; the completion starts
where the two diverge (`SFTTrainer._prepare_dataset`). With `completion_only_loss` left at its
default (None), TRL trains on the completion only for prompt-completion data (`SFTTrainer.__init__`:
None -> "prompt" and "completion" in the dataset): the prompt's labels are -100, the completion's
(including the template's end-of-turn tokens) are the tokens themselves. `completion_only_loss: false`
trains on the whole sequence. Sequences are cut to `args.max_length` (keep_start), and a row left
without any trained token (its prompt alone fills max_length) is dropped — both silently in TRL;
here they are counted first (`check_sft_lengths`) and every row dropped is refused.

A different trainer class (a subclass of `trl.SFTTrainer`) comes in through `trainer_cls`.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods.core.trainers.base import TrainerSpec
from methods.core.trainers.base import report_cut_rows


@dataclass
class SFTTrainerSpec(TrainerSpec):
    """`args` are `trl.SFTConfig` fields. Rows are {id, prompt (text or chat), completion}."""

    name: str = "sft"
    output_name = "policy"

    def config_class(self):
        from trl import SFTConfig

        return SFTConfig

    def dataset(self, tok, rows, args, stage):
        from datasets import Dataset

        conv = prompt_completion_rows(rows)
        report = check_sft_lengths(tok, rows, conv, args, stage)
        return Dataset.from_list(conv), report

    def trainer_class(self):
        from trl import SFTTrainer

        return SFTTrainer


def prompt_completion_rows(rows: list[dict]) -> list[dict]:
    """TRL's conversational prompt-completion rows from {prompt (text or chat), completion} rows."""
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}] if isinstance(r["prompt"], str) else list(r["prompt"]),
            "completion": [{"role": "assistant", "content": r["completion"]}],
        }
        for r in rows
    ]


def sft_token_lengths(tok, rows: list[dict]) -> list[tuple[int, int]]:
    """(prompt, prompt+completion) token lengths of each conversational row, as TRL 1.16 counts them: the
    prompt with the generation prompt, prompt + completion without; the prompt ends where they diverge."""
    from methods.core.generation import chat_ids
    from methods.core.scoring import common_prefix

    prompts = chat_ids(tok, [r["prompt"] for r in rows], add_generation_prompt=True)
    full = chat_ids(tok, [r["prompt"] + r["completion"] for r in rows])
    return [(common_prefix(p, f), len(f)) for p, f in zip(prompts, full)]


def check_sft_lengths(tok, given_rows: list[dict], rows: list[dict], args, stage: str) -> dict:
    """Count (and name) the rows TRL will truncate at `args.max_length` (prompt + completion longer) and
    drop (keep_start, completion-only loss, no packing: the prompt alone has >= max_length tokens, so no
    completion token is left to train on); refuse when every row would be dropped. `n_rows` is what
    TRL trains on (given − dropped). With packing, "truncated" counts the rows longer than max_length."""
    max_len, given = args.max_length, len(given_rows)
    report = {"n_rows_given": given, "n_rows": given, "n_rows_truncated": 0, "n_rows_dropped": 0}
    if max_len is None:
        return report
    lengths = sft_token_lengths(tok, rows)
    ids = [r.get("id", k) for k, r in enumerate(given_rows)]
    drops = (args.truncation_mode == "keep_start" and not args.packing and args.completion_only_loss is not False)
    dropped = [k for k, (n, _) in enumerate(lengths) if drops and n >= max_len]
    if dropped and len(dropped) == given:
        raise ValueError(
            f"stage {stage}: all {given} SFT rows would be dropped: each prompt alone has at least "
            f"trainers.policy.args.max_length={max_len} tokens, leaving no completion token to train on (the "
            f"shortest prompt: {min(n for n, _ in lengths)} tokens); raise trainers.policy.args.max_length or "
            "shorten the prompts")
    gone = set(dropped)
    truncated = [k for k, (_, n) in enumerate(lengths) if k not in gone and n > max_len]
    report_cut_rows(report, stage, ids, given, "row", [
        ("dropped", dropped, f"the prompt alone fills max_length={max_len} tokens"),
        ("truncated", truncated, f"prompt + completion cut to max_length={max_len} tokens")])
    report["n_rows"] = given - len(dropped)
    return report
