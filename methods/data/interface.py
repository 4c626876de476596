"""What a data set offers the suite.

Every data set: `labelled()`, `seed_items()`, `unlabelled(i)` (1-based pools), `eval()` — lists of items
{id, instruction, ...}. Optional capabilities, each a Protocol the suite checks with isinstance:
- `ReferenceOutputs`: `reference_outputs(items)`, the data set's own baseline answers (AlpacaEval's
  reference model); without it the baseline is the base model's greedy answers;
- `PreferencePairs`: `preference_pairs(items)`, the human-labelled pairs the data set ships
  (UltraFeedback, HH-RLHF); without it the pairs are the base model's samples labelled by `data.labeller`.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class ReferenceOutputs(Protocol):
    def reference_outputs(self, items: Sequence[dict]) -> list[dict]: ...


@runtime_checkable
class PreferencePairs(Protocol):
    def preference_pairs(self, items: Sequence[dict]) -> list[dict]: ...
