"""`AlpacaEvalSet`: the AlpacaEval 2.0 evaluation set with gpt4_1106_preview's outputs as the baseline.

Rows (alpaca_eval's `alpaca_eval_gpt4_baseline`): `instruction`, `output` (the reference),
`generator`, `dataset`; 805 of them. Source: a local file (`../shared/data/alpaca_eval/
alpaca_eval_gpt4_baseline.json`) or the hub (`tatsu-lab/alpaca_eval`, file
`alpaca_eval_gpt4_baseline.json`: the repo's loading script does not run in `datasets` >= 4).

Items: {"id": "ae-000" (row position), "instruction", "dataset"}. `eval()` returns them all
(`eval.n_instructions` takes a prefix); `reference_outputs(items)` gives the baseline rows in
alpaca_eval's `model_outputs` format, which `methods.core.evaluation` judges the policy against.
As `data=alpaca_eval` it is an evaluation set only: `labelled()`, `seed_items()` and
`unlabelled(i)` raise a ValueError saying so (method=sft needs none of them).
"""
from __future__ import annotations

from methods.data.sources import Source, rows_for

EVAL_ONLY = "data=alpaca_eval is an evaluation set only (no preference pairs, no prompt pools); use it with method=sft"


def _row(row: dict) -> dict:
    for key in ("instruction", "output"):
        if not isinstance(row[key], str):
            raise ValueError(f"field '{key}' should be str, got {type(row[key]).__name__}")
        if key == "instruction" and not row[key].strip():
            raise ValueError("field 'instruction' is empty")
    return {"instruction": row["instruction"], "output": row["output"],
            "generator": str(row.get("generator") or "reference"), "dataset": str(row.get("dataset") or "")}


class AlpacaEvalSet:
    name = "alpaca_eval"

    def __init__(self, source: str = "tatsu-lab/alpaca_eval", local_path: str | None = None,
                 hub_file: str | None = "alpaca_eval_gpt4_baseline.json", n_eval: int | None = None,
                 setting: str = "data"):
        self.src = Source(source, local_path=local_path, hub_file=hub_file, split=None, setting=f"{setting}.source")
        self.n_eval = n_eval
        self._rows: list[dict] | None = None
        self._setting = setting

    def validate(self, run=None) -> None:
        self.src.validate()
        if self.n_eval is not None and (not isinstance(self.n_eval, int) or self.n_eval < 1):
            raise ValueError(f"{self._setting}.n_eval={self.n_eval!r}: must be an integer >= 1 or null (all 805)")

    def _all(self) -> list[dict]:
        if self._rows is None:
            rows = self.src.rows(lambda row, i: _row(row))
            self._rows = [{"id": f"ae-{k:03d}", **r} for k, r in enumerate(rows)]
            self._by_id = {r["id"]: r for r in self._rows}
        return self._rows

    def eval(self) -> list[dict]:
        rows = self._all()[: self.n_eval] if self.n_eval else self._all()
        return [{"id": r["id"], "instruction": r["instruction"], "dataset": r["dataset"]} for r in rows]

    def reference_outputs(self, items) -> list[dict]:
        """The reference (gpt4_1106_preview) rows for `items`, in alpaca_eval's model_outputs format."""
        self._all()
        return [{"instruction": r["instruction"], "output": r["output"], "generator": r["generator"],
                 "dataset": r["dataset"], "id": r["id"]}
                for r in rows_for(items, self._by_id, f"the AlpacaEval set ({self.src.describe()})")]

    # ---- an evaluation set only ---------------------------------------------------------------
    n_iterations = 0

    def labelled(self) -> list[dict]:
        raise ValueError(EVAL_ONLY)

    def seed_items(self) -> list[dict]:
        raise ValueError(EVAL_ONLY)

    def unlabelled(self, i: int) -> list[dict]:
        raise ValueError(EVAL_ONLY)
