"""`method=spa` (alias `selfie`): SPA / Selfie, "Aligning Large Language Models with Self-generated
Preference Data" (Kim et al., arXiv 2406.04412; ICLR 2025).

    π_0 = DPO(π_SFT, seed pairs)                  the pairs `method=dpo method.labels=seed` trains on
    for i = 1..n:
        K samples per prompt of pool i from π_{i-1}               stage iter{i}_samples
        self-label: implicit reward of π_{i-1} (vs. reference)     stage iter{i}_labels
        π_i = self-refined DPO(init = ref = π_{i-1}, λ_i, α)       stage iter{i}_train

That is `method=iterative_dpo` (`methods/iterative_dpo.py`, the loop, the stages, the rows) with
two changes: the labeler defaults to the implicit reward (`labeler=implicit labeler.reference=sft`;
the Table 7 ablation swaps it: `labeler.reference=previous|none`, `labeler=judge`, `labeler=gold`),
and each iteration trains with the self-refined loss (`methods/spa/loss.py`, a `pair_loss` hook).
The pipeline evaluates π_0 .. π_n (iteration rows 0..n) and the final policy once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from methods.iterative_dpo import IterativeDPO

log = logging.getLogger("selfalign")


@dataclass
class SPA(IterativeDPO):
    name: str = "spa"
    lambdas: list = field(default_factory=lambda: [0.5, 0.25, 0.125])  # DND λ per iteration; last repeats
    alpha: float = 0.1  # label smoothing of pairs flagged noisy; 0 = no self-refinement
    window: int = 50
    percentile: float = 10.0
    threshold_convention: str = "current"  # current | released (methods.spa.loss.THRESHOLD_CONVENTIONS)
    warmup_fraction: float = 0.2

    # ---- checks -------------------------------------------------------------------------------
    def validate(self, run) -> None:
        super().validate(run)
        lams = self._lambdas()
        if not lams or any(x < 0 for x in lams):
            raise ValueError(f"method.lambdas={lams}: need at least one λ ≥ 0")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"method.alpha={self.alpha}: must be in [0, 1]")
        if self.window < 1 or not 0 <= self.percentile <= 100:
            raise ValueError(f"method.window={self.window}, method.percentile={self.percentile}: need window ≥ 1, "
                             "0 ≤ percentile ≤ 100")
        from methods.spa.loss import check_threshold_settings

        check_threshold_settings(self.threshold_convention, self.window, self.percentile)
        if not 0 <= self.warmup_fraction <= 1:
            raise ValueError(f"method.warmup_fraction={self.warmup_fraction}: must be in [0, 1]")

    def _lambdas(self) -> list[float]:
        lams = self.lambdas
        return [float(lams)] if isinstance(lams, (int, float)) else [float(x) for x in lams]

    def lam(self, i: int) -> float:
        """λ of iteration i (1-based); the last entry repeats when there are more iterations."""
        lams = self._lambdas()
        return lams[min(i, len(lams)) - 1]

    # ---- the hooks of the iterative-DPO loop ------------------------------------------------------
    def trainer_cls(self, run, i: int, stage: str):
        from methods.spa.loss import RefineSettings, SelfRefinedDPOTrainer

        settings = RefineSettings(lam=self.lam(i), alpha=self.alpha, window=self.window, percentile=self.percentile,
                                  warmup_fraction=self.warmup_fraction, threshold_convention=self.threshold_convention,
                                  stats_path=str(self._stats_path(run, stage)))
        return SelfRefinedDPOTrainer.configured(settings)

    def train_stats(self, run, i: int, stage: str) -> dict:
        from methods.core.io import read_json

        path = self._stats_path(run, stage)
        stats = read_json(path) if path.exists() else {}
        return {k: stats.get(k) for k in ("noisy_share", "flagged_share", "mean_margin")}

    def row_stats(self, i: int) -> dict:
        return {"lambda": self.lam(i)} if i else {}

    @staticmethod
    def _stats_path(run, stage: str):
        return run.dir / stage / "spa_stats.json"
