"""`method=sft`: the SFT model as it is (no training), the baseline every comparison starts from."""
from __future__ import annotations

from dataclasses import dataclass

from methods.core.contract import MethodResult, Policy


@dataclass
class SFT:
    name: str = "sft"

    def validate(self, run) -> None:
        pass

    def __call__(self, run) -> MethodResult:
        return MethodResult(Policy(run.base_model_path), labelled_pairs=0)
