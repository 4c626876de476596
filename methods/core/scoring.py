"""Log-prob scoring of (prompt, response) pairs, and the implicit DPO reward built on it.

`sequence_logprobs` runs the decoder once per batch and applies the LM head only at response
positions (cross-entropy on those rows), which beats a full-vocabulary log-softmax over the whole
sequence on CPU. With a PEFT model, `reference=True` scores under the base weights by disabling the
adapters: no second copy of the model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

from methods.core.generation import Messages, as_messages, chat_ids


@dataclass
class LogProbs:
    sum: list[float]  # log π(y|x), summed over response tokens (end-of-turn token included)
    mean: list[float]  # the same, divided by the number of response tokens
    n_tokens: list[int]


def encode_pairs(tokenizer, prompts: Sequence[str | Messages], responses: Sequence[str]) -> list[tuple[list[int], int]]:
    """Token ids of chat-template(prompt + assistant response), and where the response starts.

    Tokenised as TRL's DPOTrainer does, so an implicit reward scores the very tokens DPO trains on:
    the whole conversation through the chat template (end-of-turn and any template tokens after it
    included), the response starting where it diverges from the templated prompt alone.
    """
    convs = [as_messages(p) for p in prompts]
    p_ids = chat_ids(tokenizer, convs, add_generation_prompt=True)
    full = chat_ids(tokenizer, [c + [{"role": "assistant", "content": r}] for c, r in zip(convs, responses)])
    return [(list(f), common_prefix(p, f)) for p, f in zip(p_ids, full)]


def common_prefix(a, b) -> int:
    """Length of the longest common prefix of two token id lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def decoder_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def sequence_logprobs(
    model,
    tokenizer,
    prompts: Sequence[str | Messages],
    responses: Sequence[str],
    batch_size: int = 16,
    reference: bool = False,
    max_length: int | None = None,
) -> LogProbs:
    """log π(y|x) for each (x, y); `reference=True` disables LoRA adapters (the base model is π_ref)."""
    import torch
    import torch.nn.functional as F

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    seqs = encode_pairs(tokenizer, prompts, responses)
    if max_length:
        seqs = [(ids[:max_length], min(p, max_length)) for ids, p in seqs]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
    decoder, head = decoder_and_head(model)
    ctx = model.disable_adapter() if reference and hasattr(model, "disable_adapter") else contextlib.nullcontext()
    out_sum, out_n = [0.0] * len(seqs), [0] * len(seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    with torch.inference_mode(), ctx:
        for k in range(0, len(order), batch_size):
            idx = order[k : k + batch_size]
            width = max(len(seqs[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            target_mask = torch.zeros_like(ids, dtype=torch.bool)
            for r, i in enumerate(idx):
                s, p = seqs[i]
                ids[r, : len(s)] = torch.tensor(s)
                attn[r, : len(s)] = 1
                target_mask[r, p : len(s)] = True  # tokens to score: the response and its end-of-turn
            ids, attn, target_mask = ids.to(device), attn.to(device), target_mask.to(device)
            hidden = decoder(input_ids=ids, attention_mask=attn).last_hidden_state
            # position t predicts token t+1: gather hidden states just before each scored token
            pred_mask = target_mask[:, 1:]
            h = hidden[:, :-1][pred_mask]
            targets = ids[:, 1:][pred_mask]
            tok_lp = -F.cross_entropy(head(h).float(), targets, reduction="none")
            counts = pred_mask.sum(1).tolist()
            for r, piece in zip(idx, torch.split(tok_lp, counts)):
                out_sum[r] = piece.sum().item()
                out_n[r] = len(piece)
    return LogProbs(sum=out_sum, mean=[s / max(n, 1) for s, n in zip(out_sum, out_n)], n_tokens=out_n)


def implicit_reward(policy: LogProbs, reference: LogProbs | None, beta: float) -> list[float]:
    """r(x, y) = β·[log π_θ(y|x) − log π_ref(y|x)]; with no reference, β·log π_θ(y|x)."""
    if reference is None:
        return [beta * s for s in policy.sum]
    return [beta * (a - b) for a, b in zip(policy.sum, reference.sum)]
