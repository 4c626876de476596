"""SSO's generator losses (arXiv 2410.17131) and the policy's IPO option.

Per query, with DPO(c; a ≻ b) = −log σ(β·[(log π(a|c) − log π_ref(a|c)) − (log π(b|c) − log π_ref(b|c))])
and SFT(c, a) = −log π(a|c) / |a| (the per-token mean, as LlamaFactory's `pref_ftx` term):

    v2 (default)   L = L⁺ + L⁻,  L⁺ = DPO(x⁺; y⁺ ≻ y⁻) + γ·SFT(x⁺, y⁺),  L⁻ = DPO(x⁻; y_o ≻ y⁺) + γ·SFT(x⁻, y_o)
    naive          L⁻ replaced by DPO(x⁻; y⁻ ≻ y⁺) + γ·SFT(x⁻, y⁻)
    plus / minus   L⁺ alone / L⁻ alone (the ablation rows)
    v1 (the code)  L = DPO(x; y⁺ ≻ y⁻) + W·G·[DPO(x⁺; y⁺ ≻ y⁻) + DPO(x⁻; y_o ≻ y⁺)],
                   W = σ(−(α·ℓ̄(y⁺|x) + (1 − α)·ℓ̄(y⁻|x))), ℓ̄ the per-token mean log-likelihood

Every form is a sum of DPO terms over (context, chosen, rejected) rows, each with a weight and the
γ·SFT term on its chosen answer, so the generator trains with the suite's DPO trainer: `generator_rows`
writes the rows, `GeneratorTrainer.pair_loss` is DPO + γ·SFT(chosen), the trainer multiplies by the
row's weight. The trainer's batch loss is the mean over rows, i.e. L per query divided by its number of
rows (a constant scale that Adam ignores). In v1 the suite evaluates W once, under the generator's
initial model, where the code recomputes it every step (the rows of one query are not in one batch).
"""
from __future__ import annotations

import math

from methods.core.trainers.dpo import PreferenceDPOTrainer
from methods.judges.base import sigmoid

FORMS = ("v2", "naive", "plus", "minus", "v1")


# ---- the per-query forms on log-probs (floats), for reading and for tests ---------------------------
def dpo(pc: float, pr: float, rc: float, rr: float, beta: float) -> float:
    z = beta * ((pc - rc) - (pr - rr))
    return math.log1p(math.exp(-z)) if z > 0 else -z + math.log1p(math.exp(z))


def sft(logp_sum: float, n_tokens: int) -> float:
    return -logp_sum / n_tokens


def weight_v1(mean_plus: float, mean_minus: float, alpha: float) -> float:
    """W = σ(−(α·ℓ̄(y⁺|x) + (1 − α)·ℓ̄(y⁻|x))): larger for answers the model finds less likely."""
    return sigmoid(-(alpha * mean_plus + (1 - alpha) * mean_minus))


# ---- rows for the trainer -------------------------------------------------------------------------
def generator_rows(row: dict, form: str, big_g: float = 0.1, w: float | None = None) -> list[dict]:
    """The DPO rows of one sampled query {id, x, x_plus, x_minus, y_plus, y_minus, y_o}: each
    {id, prompt, chosen, rejected, weight, term}; `w` is v1's W for this query."""
    def r(term, prompt, chosen, rejected, weight=1.0):
        return {"id": f"{row['id']}:{term}", "prompt": prompt, "chosen": chosen, "rejected": rejected,
                "weight": weight, "term": term}

    plus = r("plus", row["x_plus"], row["y_plus"], row["y_minus"])
    minus = r("minus", row["x_minus"], row["y_o"], row["y_plus"])
    if form == "v2":
        return [plus, minus]
    if form == "naive":
        return [plus, r("naive_minus", row["x_minus"], row["y_minus"], row["y_plus"])]
    if form == "plus":
        return [plus]
    if form == "minus":
        return [minus]
    if form == "v1":
        if w is None:
            raise ValueError("generator_loss=v1 needs each query's weight W")
        return [r("x", row["x"], row["y_plus"], row["y_minus"]),
                {**plus, "weight": w * big_g}, {**minus, "weight": w * big_g}]
    raise ValueError(f"method.generator_loss={form!r}: choose one of {list(FORMS)} (or none: no generator)")


class GeneratorTrainer(PreferenceDPOTrainer):
    """pair_loss = DPO + γ·SFT(chosen), SFT the chosen answer's per-token mean NLL; γ = `gamma`."""

    gamma = 0.1

    def pair_loss(self, batch):
        loss = super().pair_loss(batch)
        if self.gamma:
            loss = loss + self.gamma * (-batch.chosen_logps / batch.chosen_lengths.clamp(min=1))
        return loss


def generator_trainer(gamma: float) -> type:
    return type("GeneratorTrainer", (GeneratorTrainer,), {"gamma": float(gamma)})


class IPOTrainer(PreferenceDPOTrainer):
    """IPO (Azar et al. 2023) as TRL had it: (h − 1/(2β))², h the difference of the per-token mean
    log-ratios of chosen and rejected."""

    def pair_loss(self, batch):
        n_c = batch.chosen_lengths.clamp(min=1)
        n_r = batch.inputs["completion_mask"].chunk(2, dim=0)[1].sum(dim=1).clamp(min=1)
        h = batch.chosen_logratios / n_c - batch.rejected_logratios / n_r
        return (h - 1 / (2 * self.beta)) ** 2
