"""`AlpacaEvalJudge`: an alpaca_eval annotator config run through alpaca_eval's own API.

`compare` builds rows {instruction, output_1, output_2} and calls
`alpaca_eval.annotators.PairwiseAnnotator(annotators_config=<name>, caching_path=None, seed=...)
.annotate_pairs(rows)` (alpaca_eval 0.6.6); the default config, `weighted_alpaca_eval_gpt4_turbo`,
is the AlpacaEval 2.0 leaderboard's (and the papers') judge: GPT-4 Turbo, preference = 1 + P("M")
from its logprobs. alpaca_eval randomises the order of the two outputs per instruction itself and
maps the preference back. Its preference 0 (identical outputs) becomes 1.5; a failed annotation
stays NaN (the win rate drops it and counts it in `n_dropped`). `caching_path=None`: alpaca_eval's
annotation cache breaks under pandas 3 (STACK_NOTES).

`validate` is cheap (no alpaca_eval import, which takes seconds): the package is installed, the
annotator config exists in it, and the API key variable (`OPENAI_API_KEY`) is set.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

from methods.judges.llm import instruction_text


def configs_dir() -> Path | None:
    spec = importlib.util.find_spec("alpaca_eval")  # locates the package without importing it
    return None if spec is None else Path(list(spec.submodule_search_locations)[0]) / "evaluators_configs"


@dataclass
class AlpacaEvalJudge:
    annotators_config: str = "weighted_alpaca_eval_gpt4_turbo"
    name: str | None = None  # default: the annotator config's name
    api_key_env: str = "OPENAI_API_KEY"
    seed: int = 0

    def __post_init__(self):
        self.name = self.name or Path(self.annotators_config).name

    def validate(self, run=None) -> None:
        d = configs_dir()
        if d is None:
            raise ValueError("judge=alpaca_eval: the `alpaca-eval` package is not installed")
        cfg = Path(self.annotators_config)
        if not (cfg.exists() or (d / cfg).exists()):
            raise ValueError(f"judge.annotators_config={self.annotators_config!r}: no such alpaca_eval annotator "
                             f"config (see {d})")
        if not os.environ.get(self.api_key_env):
            raise ValueError(f"judge=alpaca_eval ({self.annotators_config}) calls the OpenAI API: set the "
                             f"{self.api_key_env} environment variable, or use a local judge (judge=llm)")

    def compare(self, items, outputs_1, outputs_2) -> list[float]:
        if not len(items) == len(outputs_1) == len(outputs_2):
            raise ValueError(f"alpaca_eval judge: {len(items)} items but {len(outputs_1)} / {len(outputs_2)} outputs")
        self.validate()
        from alpaca_eval.annotators import PairwiseAnnotator

        rows = [{"instruction": instruction_text(it["instruction"]), "output_1": a, "output_2": b}
                for it, a, b in zip(items, outputs_1, outputs_2)]
        annotator = PairwiseAnnotator(annotators_config=self.annotators_config, caching_path=None, seed=self.seed)
        annotated = annotator.annotate_pairs(rows)
        # alpaca_eval may reorder or deduplicate rows: match them back by their content
        by_key = {(a["instruction"], a["output_1"], a["output_2"]): a.get("preference") for a in annotated}
        return [to_preference(by_key.get((r["instruction"], r["output_1"], r["output_2"]))) for r in rows]


def to_preference(p) -> float:
    """alpaca_eval's preference as the suite's: 0 (identical outputs) -> 1.5; missing -> NaN."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return float("nan")
    p = float(p)
    return 1.5 if p == 0 else p
