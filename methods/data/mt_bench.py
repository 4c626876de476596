"""`MTBench`: the 80 two-turn MT-Bench questions, for generation (judging them is not implemented).

Rows (FastChat's `question.jsonl`): `question_id` (int), `category` (str), `turns` (list of 1-2
strings). Items: {"id": "mt-<question_id>", "instruction": the first turn, "turns", "category"}.
`eval()` returns them (first turn as the prompt); `second_turn(item, answer)` is the chat for the
second turn, [user turn 1, assistant answer, user turn 2], which the generation engine takes as is.
An evaluation set only: `labelled()` etc. raise a ValueError.
"""
from __future__ import annotations

from methods.data.sources import Source

EVAL_ONLY = "data=mt_bench is an evaluation set only (questions, no preference pairs); use it with method=sft"


def convert_row(row: dict) -> dict:
    turns = row["turns"]
    if hasattr(turns, "tolist"):
        turns = turns.tolist()
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise ValueError("field 'turns' should be a non-empty list of non-empty strings")
    qid = row["question_id"]
    if not isinstance(qid, (int, str)) or isinstance(qid, bool):
        raise ValueError(f"field 'question_id' should be int, got {type(qid).__name__}")
    return {"id": f"mt-{qid}", "instruction": turns[0], "turns": list(turns), "category": str(row.get("category", ""))}


class MTBench:
    name = "mt_bench"
    n_iterations = 0

    def __init__(self, source: str = "../shared/data/mt_bench/question.jsonl", local_path: str | None = None,
                 split: str = "train", categories=None):
        self.src = Source(source, local_path=local_path, split=split)
        self.categories = list(categories) if categories else None
        self._items: list[dict] | None = None

    def validate(self, run=None) -> None:
        self.src.validate()

    def eval(self) -> list[dict]:
        if self._items is None:
            self._items = self.src.rows(lambda row, i: convert_row(row))
        return [dict(it) for it in self._items if not self.categories or it["category"] in self.categories]

    @staticmethod
    def second_turn(item: dict, answer: str) -> list[dict] | None:
        """The chat for the second turn, or None when the question has one turn."""
        if len(item["turns"]) < 2:
            return None
        return [{"role": "user", "content": item["turns"][0]}, {"role": "assistant", "content": answer},
                {"role": "user", "content": item["turns"][1]}]

    def labelled(self):
        raise ValueError(EVAL_ONLY)

    def seed_items(self):
        raise ValueError(EVAL_ONLY)

    def unlabelled(self, i):
        raise ValueError(EVAL_ONLY)
