"""`HHRLHF`: Anthropic HH-RLHF preference pairs (full dialogues) as prompt + chosen + rejected.

Rows: `chosen`, `rejected`, each a whole dialogue of "\\n\\nHuman: ..." / "\\n\\nAssistant: ..." turns
that differ only in the last Assistant turn. Parsed into:
- `instruction`: the turns before the last Assistant turn: a string when that is one Human turn,
  else a chat, [{"role": "user"|"assistant", "content"}, ...] (the engine takes either);
- `chosen`, `rejected`: the last Assistant turn of each dialogue.
A dialogue with text before its first turn, or without a final Assistant turn, or a pair whose two
prompts differ, raises `DataError("<file>, row <n>: ...")`; with `skip_malformed` it is logged and
left out instead. The real harmless-base test split has 5 such rows out of 2312 (1255, 1689, 1951,
1953, 2037: a turn without its "\n\n" or a dialogue one turn longer than its pair), so
conf/data/hh_rlhf.yaml skips them.

Source: a local file (`../shared/data/hh_rlhf/harmless-base-test.jsonl.gz`) or the hub
(`Anthropic/hh-rlhf`, `hub_data_dir` e.g. `harmless-base`, split `test` / `train`). Items get
ids "hh-<row>" (1-based file row). Splits as UltraFeedback's (`PairSplits`: seeded shuffle, seed,
pools, rest); `eval()` = the first `n_eval` held-out prompts (no reference outputs: the baseline
is the base model's greedy outputs); `labelled()` = every pair except those eval prompts.
"""
from __future__ import annotations

import re

from methods.data.sources import PairSplits, Source

# a turn mark is followed by a space, except a final Assistant turn that is empty ("...\n\nAssistant:"
# at the very end, maybe with trailing whitespace): a real reply of nothing, kept as ""
TURN = re.compile(r"\n\n(Human|Assistant): |\n\n(Assistant):\s*$")
ROLE = {"Human": "user", "Assistant": "assistant"}


def parse_dialogue(text: str, field: str) -> list[dict]:
    """[{role, content}] of an HH-RLHF dialogue; ValueError when it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"field '{field}' should be str, got {type(text).__name__}")
    marks = list(TURN.finditer(text))
    if not marks or text[: marks[0].start()].strip():
        raise ValueError(f"field '{field}' should start with a '\\n\\nHuman: ' turn")
    turns = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        turns.append({"role": ROLE[m.group(1) or m.group(2)], "content": text[m.end() : end].strip()})
    if turns[-1]["role"] != "assistant" or len(turns) < 2:
        raise ValueError(f"field '{field}' has no final Assistant turn")
    return turns


def convert_row(row: dict, row_id: str) -> dict:
    chosen, rejected = parse_dialogue(row["chosen"], "chosen"), parse_dialogue(row["rejected"], "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise ValueError("'chosen' and 'rejected' have different prompts (the dialogues differ before the last turn)")
    prompt = chosen[:-1]
    single = len(prompt) == 1 and prompt[0]["role"] == "user"
    return {"id": row_id, "instruction": prompt[0]["content"] if single else prompt,
            "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"]}


class HHRLHF(PairSplits):
    name = "hh_rlhf"

    def __init__(self, source: str = "Anthropic/hh-rlhf", local_path: str | None = None,
                 hub_data_dir: str | None = "harmless-base", split: str = "test", seed: int = 42,
                 n_seed: int | None = None, seed_fraction: float | None = 0.1, n_unlabelled=(), n_eval: int = 200,
                 skip_malformed: bool = False):
        self.skip_malformed = skip_malformed
        self.src = Source(source, local_path=local_path, split=split, hub_data_dir=hub_data_dir)
        self.n_eval = n_eval
        self._init_split(seed, n_seed, seed_fraction, n_unlabelled)
        self.validate_split()

    def validate(self, run=None) -> None:
        self.validate_split()
        if not isinstance(self.n_eval, int) or self.n_eval < 0:
            raise ValueError(f"data.n_eval={self.n_eval!r}: must be an integer >= 0")
        self.src.validate()

    def describe_source(self) -> str:
        return self.src.describe()

    def _load(self) -> list[dict]:
        return self.src.rows(lambda row, i: convert_row(row, f"hh-{i:05d}"), skip_malformed=self.skip_malformed)

    def eval(self) -> list[dict]:
        return [{"id": p["id"], "instruction": p["instruction"]} for p in self.held_out()[: self.n_eval]]

    def _eval_ids(self) -> set:
        # eval() is drawn from this data set's held-out pairs: `labelled()` (DPO on all labels) must
        # leave them out (the seed and the pools come before the held-out pairs, so never hold them)
        return {p["id"] for p in self.held_out()[: self.n_eval]}
