"""The reward-gap model r_gap(x, y, y_ref): a one-logit sequence classifier on the SFT model over the
request, a reference answer y_ref and an answer y (the text of `prompts.gap`), trained so that, with
r^{a,b} = r_gap(x, y_a, y_b) for a preference pair (y_w ≻ y_l),

    r^{w,l} > r^{w,w} ≈ r^{l,l} > r^{l,w}

by the five-term loss (PIT, Wang et al. 2023; secondary: METHODS.md), one value per pair:

    L = −[log σ(r^{wl} − r^{ww}) + log σ(r^{wl} − r^{ll}) + log σ(r^{wl} − r^{lw})
          + log σ(r^{ww} − r^{lw}) + log σ(r^{ll} − r^{lw})]

It runs as the reward trainer's `reward_loss` hook. A pair gives two of TRL's preference rows, kept
next to each other by `PairedSampler`:

    row 2k   : prompt = gap text(x, y_ref = y_l), chosen = y_w -> r^{wl}, rejected = y_l -> r^{ll}
    row 2k+1 : prompt = gap text(x, y_ref = y_w), chosen = y_w -> r^{ww}, rejected = y_l -> r^{lw}

so a batch of 2B rows holds B pairs: chosen rewards [wl, ww, wl, ww, ...], rejected [ll, lw, ...].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from methods.core.trainers.reward import PreferenceRewardTrainer


def five_term_loss(wl, ww, ll, lw):
    import torch.nn.functional as F

    return -(F.logsigmoid(wl - ww) + F.logsigmoid(wl - ll) + F.logsigmoid(wl - lw)
             + F.logsigmoid(ww - lw) + F.logsigmoid(ll - lw))


class PairedSampler(torch.utils.data.Sampler):
    """Rows 2k and 2k+1 stay adjacent; the pairs are shuffled (seed + epoch, so a resumed run repeats)."""

    def __init__(self, n_rows: int, seed: int):
        if n_rows % 2:
            raise ValueError(f"gap model: {n_rows} rows; two rows a pair")
        self.n_rows, self.seed, self.epoch = n_rows, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        for k in torch.randperm(self.n_rows // 2, generator=g).tolist():
            yield 2 * k
            yield 2 * k + 1

    def __len__(self) -> int:
        return self.n_rows


class GapRewardTrainer(PreferenceRewardTrainer):
    def __init__(self, *args, train_dataset=None, **kwargs):
        given = len(train_dataset)
        super().__init__(*args, train_dataset=train_dataset, **kwargs)
        if len(self.train_dataset) != given:  # TRL filtered rows at max_length: the row pairs would shift
            raise ValueError(f"gap model: TRL kept {len(self.train_dataset)} of {given} rows (max_length); "
                             "every pair must keep both rows")

    def _get_train_sampler(self, train_dataset=None):
        return PairedSampler(len(train_dataset if train_dataset is not None else self.train_dataset), self.args.seed)

    def reward_loss(self, batch):
        c, r = batch.chosen_rewards, batch.rejected_rewards
        if c.shape[0] % 2:
            raise RuntimeError(f"gap model: a batch of {c.shape[0]} rows splits a pair (use an even batch size)")
        return five_term_loss(c[0::2], c[1::2], r[0::2], r[1::2])


def gap_rows(pairs: list[dict], prompts) -> list[dict]:
    """Two preference rows per pair {id, prompt, chosen, rejected}, in the order the loss reads them."""
    rows = []
    for p in pairs:
        for ref in (p["rejected"], p["chosen"]):
            rows.append({"id": p["id"], "prompt": prompts.gap_context(p["prompt"], ref),
                         "chosen": p["chosen"], "rejected": p["rejected"]})
    return rows


def ordering(wl: float, ww: float, ll: float, lw: float) -> dict:
    """One pair's orderings under the gap model (True / False per relation)."""
    return {"wl_over_ww": wl > ww, "ll_over_lw": ll > lw, "wl_over_lw": wl > lw,
            "full": wl > max(ww, ll) and min(ww, ll) > lw}


@dataclass
class GapReward:
    """The PPO reward r_gap(x, y, y_ref) for items {instruction, y_ref}; `judge` a RewardModelJudge on
    the gap model with `GAP_TEMPLATE`."""

    judge: Any
    prompts: Any
    name: str = "pit_gap"

    def score(self, items, outputs) -> list[float]:
        ctx = [{"instruction": self.prompts.gap_context(it["instruction"], it["y_ref"])} for it in items]
        return self.judge.score(ctx, outputs)
