"""The models PPO trains and how a rollout batch becomes tensors.

Sequences are right-padded prompt + response (so positions are plain 0..L−1, as `generate` gives a
left-padded prompt). `positions[b, t]` is the index of the hidden state that predicts response token t
of row b (its prompt length − 1 + t). The LM head and the value head run on those positions only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods.core.scoring import decoder_and_head
from methods.core.trainers.ppo.math import entropy_from_logits, logprobs_from_logits


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor  # (B, L) prompt + response, right-padded
    attention_mask: torch.Tensor  # (B, L)
    positions: torch.Tensor  # (B, T) hidden-state index predicting each response token
    responses: torch.Tensor  # (B, T) response token ids, padded
    mask: torch.Tensor  # (B, T) 1.0 on response tokens

    def to(self, device) -> "RolloutBatch":
        return RolloutBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.positions,
                                                      self.responses, self.mask)))

    def rows(self, idx) -> "RolloutBatch":
        return RolloutBatch(*(t[idx] for t in (self.input_ids, self.attention_mask, self.positions,
                                                self.responses, self.mask)))

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def make_batch(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int) -> RolloutBatch:
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids)]
    B, L, T = len(prompt_ids), max(lengths), max(len(r) for r in response_ids)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)
    resp = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T))
    for b, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        ids[b, : len(p) + len(r)] = torch.tensor(list(p) + list(r))
        attn[b, : len(p) + len(r)] = 1
        pos[b] = (len(p) - 1 + torch.arange(T)).clamp(max=len(p) + len(r) - 1)  # padding points at the last token
        resp[b, : len(r)] = torch.tensor(list(r))
        mask[b, : len(r)] = 1.0
    return RolloutBatch(ids, attn, pos, resp, mask)


def _gather(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))


class Actor(nn.Module):
    """The policy (a causal LM, LoRA-wrapped or not) and, for `critic=head`, a value head on its backbone.
    forward -> (log-probs, entropies, values or None), each (B, T), at the response positions."""

    def __init__(self, policy, value_head: nn.Module | None = None):
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    def forward(self, batch: RolloutBatch, temperature: float):
        decoder, lm_head = decoder_and_head(self.policy)
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        h = _gather(hidden, batch.positions)
        logits = lm_head(h).float()
        logp = logprobs_from_logits(logits, batch.responses, temperature)
        entropy = entropy_from_logits(logits / temperature)
        values = self.value_head(h).squeeze(-1).float() if self.value_head is not None else None
        return logp, entropy, values


class Critic(nn.Module):
    """A separate value model: a sequence classifier's backbone and its one-logit `score` head, read at
    every response position (initialised from a reward model, as TRL's last PPOTrainer did, or from the
    policy's weights with a zero head)."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier
        self.backbone = getattr(classifier, classifier.base_model_prefix)
        self.head = classifier.score

    def forward(self, batch: RolloutBatch):
        hidden = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return self.head(_gather(hidden, batch.positions)).squeeze(-1).float()


def load_critic(path: str, pad_token_id: int, zero_head: bool) -> Critic:
    import transformers

    from methods.core.trainers.reward import _quiet_new_head

    with _quiet_new_head():
        clf = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    clf.config.pad_token_id = pad_token_id
    if zero_head:  # a fresh head: V = 0 everywhere at the start, so the first advantages are the returns
        nn.init.zeros_(clf.score.weight)
        if clf.score.bias is not None:
            nn.init.zeros_(clf.score.bias)
    return Critic(clf)


def value_head(hidden_size: int) -> nn.Module:
    head = nn.Linear(hidden_size, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head
