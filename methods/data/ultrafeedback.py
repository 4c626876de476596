"""`UltraFeedback`: binarized UltraFeedback preference pairs with SPA's split, evaluated on AlpacaEval 2.0.

Accepted schemas (one row per prompt):
- argilla/ultrafeedback-binarized-preferences-cleaned (split `train`, the SPA paper's): `prompt` (str),
  `chosen` / `rejected` (message lists ending with the assistant's answer), `chosen-rating`,
  `rejected-rating`, `chosen-model`, `rejected-model`, `source`;
- HuggingFaceH4/ultrafeedback_binarized (split `train_prefs`): `prompt`, `prompt_id`, `chosen`,
  `rejected` (message lists), `score_chosen`, `score_rejected`, `messages`.
`chosen` / `rejected` may also be plain strings (the answer alone). A row without a string `prompt`,
or whose chosen/rejected is not a message list ending with an assistant turn, raises
`DataError("<file>, row <n>: ...")`.

Items: {"id" (`prompt_id`, else sha256 of the prompt, 16 hex; repeats get "-2", "-3", ...),
"instruction" (the prompt), "chosen", "rejected" (answer texts), "chosen_score", "rejected_score"}.
Splits (see `methods.data.sources.PairSplits`): shuffle with `seed` (42, the paper's), the seed =
the first `n_seed` pairs (2000 = 3.3% of the 60,917 argilla rows) or ceil(`seed_fraction` · N),
then unlabelled pools of `n_unlabelled` (8K, 20K, 30K) prompts, the rest held out.
`labelled()` = all pairs; `eval()` / `reference_outputs()` = the AlpacaEval 2.0 set (`eval_source`).
Nothing is read until a split is asked for: validation is cheap and offline.
"""
from __future__ import annotations

import hashlib

from methods.data.alpaca_eval import AlpacaEvalSet
from methods.data.sources import PairSplits, Source, messages_content

H4_ID = "HuggingFaceH4/ultrafeedback_binarized"


def _score(row: dict, *keys):
    for k in keys:
        v = row.get(k)
        if v is not None:
            return float(v)
    return None


def convert_row(row: dict) -> dict:
    prompt = row["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("field 'prompt' should be a non-empty string")
    c_prompt, chosen = messages_content(row["chosen"], "chosen")
    r_prompt, rejected = messages_content(row["rejected"], "rejected")
    if c_prompt and r_prompt and c_prompt != r_prompt:
        raise ValueError("'chosen' and 'rejected' have different prompt messages")
    pid = row.get("prompt_id")
    return {
        "id": str(pid) if pid else hashlib.sha256(prompt.encode()).hexdigest()[:16],
        "instruction": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "chosen_score": _score(row, "chosen-rating", "score_chosen", "chosen_rating"),
        "rejected_score": _score(row, "rejected-rating", "score_rejected", "rejected_rating"),
    }


class UltraFeedback(PairSplits):
    name = "ultrafeedback"

    def __init__(self, source: str = "argilla/ultrafeedback-binarized-preferences-cleaned",
                 local_path: str | None = None, split: str | None = None, seed: int = 42,
                 n_seed: int | None = 2000, seed_fraction: float | None = None,
                 n_unlabelled=(8000, 20000, 30000), eval_source: str = "tatsu-lab/alpaca_eval",
                 eval_local_path: str | None = None, n_eval: int | None = None):
        split = split or ("train_prefs" if source == H4_ID else "train")
        self.src = Source(source, local_path=local_path, split=split)
        self.eval_set = AlpacaEvalSet(eval_source, local_path=eval_local_path, n_eval=n_eval, setting="data.eval")
        self._init_split(seed, n_seed, seed_fraction, n_unlabelled)
        self.validate_split()

    def validate(self, run=None) -> None:
        self.validate_split()
        self.src.validate()
        self.eval_set.validate()

    def describe_source(self) -> str:
        return self.src.describe()

    def _load(self) -> list[dict]:
        rows = self.src.rows(lambda row, i: convert_row(row))
        seen: dict[str, int] = {}
        for r in rows:  # repeated prompts keep distinct ids, in file order (deterministic)
            k = seen[r["id"]] = seen.get(r["id"], 0) + 1
            if k > 1:
                r["id"] = f"{r['id']}-{k}"
        return rows

    def eval(self) -> list[dict]:
        return self.eval_set.eval()

    def reference_outputs(self, items) -> list[dict]:
        return self.eval_set.reference_outputs(items)
