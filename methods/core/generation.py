"""The shared generation engine: chat prompts in, sampled completions out.

`HFEngine` batches prompts with left padding, sorts them by length so a batch pads little, and
uses the KV cache of `generate`; `VLLMEngine` offers the same call on GPUs when vLLM is installed.
`Run.engine` picks one by `generation.backend` (hf, fast, vllm).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

from methods.core import budget

log = logging.getLogger(__name__)

Messages = list[dict]  # a chat: [{"role": "user", "content": ...}, ...]


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling settings. temperature 0 means greedy decoding."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n={self.n}: need at least one sample per prompt")
        if self.temperature < 0 or not (0 < self.top_p <= 1):
            raise ValueError(f"temperature={self.temperature}, top_p={self.top_p}: need temperature ≥ 0, 0 < top_p ≤ 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be ≥ 1")


@dataclass
class Completion:
    text: str
    n_tokens: int  # generated tokens, the end-of-turn token included when it was produced
    finished: bool  # False when cut at max_new_tokens
    token_ids: tuple | None = None  # the generated ids, cut after the end-of-turn token (RL needs them exact)


@dataclass
class GenerationStats:
    n_sequences: int = 0
    n_tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.seconds if self.seconds else 0.0


def chat_ids(tokenizer, chats: Sequence[Messages], add_generation_prompt: bool = False) -> list[list[int]]:
    """Token ids of each chat through the tokenizer's chat template."""
    out = tokenizer.apply_chat_template(list(chats), add_generation_prompt=add_generation_prompt, tokenize=True)
    # transformers 5 returns a mapping here, older versions a bare list
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int):
    """(input_ids, attention_mask) tensors, each row right-aligned so generation continues it."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        attn[r, width - len(s) :] = 1
    return ids, attn


def as_messages(prompt: str | Messages) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class HFEngine:
    """Batched `generate` on a transformers model (CPU or GPU)."""

    def __init__(self, model, tokenizer, batch_size: int = 64, progress: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.last_stats = GenerationStats()

    def encode(self, prompts: Sequence[str | Messages]) -> list[list[int]]:
        return chat_ids(self.tokenizer, [as_messages(p) for p in prompts], add_generation_prompt=True)

    def context_length(self) -> int | None:
        """The model's context window in tokens (None when its config does not say)."""
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)

    def _check_context(self, ids: list[list[int]], max_new_tokens: int) -> None:
        """Refuse prompts that cannot fit with their new tokens, before any batch is allocated: past the
        context the model has no positions, and one over-long prompt pads its whole batch (a 100k-character
        prompt asked for 11.7 GB)."""
        context = self.context_length()
        if context is None:
            return
        over = [i for i, x in enumerate(ids) if len(x) + max_new_tokens > context]
        if over:
            i = max(over, key=lambda i: len(ids[i]))
            raise ValueError(
                f"{len(over)} of {len(ids)} prompts do not fit the model's context length of {context} tokens "
                f"(model.config.max_position_embeddings) with max_new_tokens={max_new_tokens}: prompt {over[0]} has "
                f"{len(ids[over[0]])} tokens" + (f", the longest (prompt {i}) {len(ids[i])}" if i != over[0] else "")
                + "; shorten the prompts or lower max_new_tokens")

    def generate(self, prompts: Sequence[str | Messages], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions for each prompt, in prompt order. Deterministic for a given seed.
        A prompt whose tokens + max_new_tokens exceed the model's context is refused (ValueError)."""
        import time

        import torch
        from tqdm.auto import tqdm

        ids = self.encode(prompts)
        self._check_context(ids, params.max_new_tokens)
        jobs = [(i, j) for i in range(len(ids)) for j in range(params.n)]
        # Longest first: similar lengths share a batch, and a memory problem shows in the first batch.
        jobs.sort(key=lambda ij: (-len(ids[ij[0]]), ij))
        results: list[list[Completion | None]] = [[None] * params.n for _ in ids]
        tok, model = self.tokenizer, self.model
        eos = {tok.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
        stats = GenerationStats(n_sequences=len(jobs))
        t0 = time.perf_counter()
        batches = [jobs[k : k + self.batch_size] for k in range(0, len(jobs), self.batch_size)]
        for b, batch in enumerate(tqdm(batches, desc="generate", disable=not self.progress, leave=False)):
            input_ids, attn = left_pad([ids[i] for i, _ in batch], tok.pad_token_id)
            width = input_ids.size(1)
            sample = params.temperature > 0
            # A seed per batch: results do not depend on what ran before (resume gives the same samples).
            torch.manual_seed(params.seed * 1_000_003 + b)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids.to(model.device),
                    attention_mask=attn.to(model.device),
                    max_new_tokens=params.max_new_tokens,
                    do_sample=sample,
                    temperature=params.temperature if sample else None,
                    top_p=params.top_p if sample else None,
                    top_k=0 if sample else None,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=sorted(eos),
                )
            new = out[:, width:].tolist()
            for r, (i, j) in enumerate(batch):
                toks = new[r]
                stop = next((k for k, t in enumerate(toks) if t in eos), None)
                keep = toks if stop is None else toks[:stop]
                n_tok = len(toks) if stop is None else stop + 1
                text = tok.decode(keep, skip_special_tokens=True).strip()
                results[i][j] = Completion(text=text, n_tokens=n_tok, finished=stop is not None,
                                           token_ids=tuple(toks[:n_tok]))
                stats.n_tokens += n_tok
        stats.seconds = time.perf_counter() - t0
        self.last_stats = stats
        budget.count(generated_tokens=stats.n_tokens)
        log.info("generated %d sequences, %d tokens, %.1f tok/s", stats.n_sequences, stats.n_tokens, stats.tokens_per_second)
        return results  # type: ignore[return-value]


class VLLMEngine:
    """The same call on vLLM (GPU users); imported only when used."""

    def __init__(self, model_path: str, dtype: str = "auto", gpu_memory_utilization: float = 0.85, **kwargs):
        import vllm  # noqa: F401  (import-guarded: CPU installs never need it)

        self._vllm = vllm
        self.llm = vllm.LLM(model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, **kwargs)
        self.last_stats = GenerationStats()

    def generate(self, prompts: Sequence[str | Messages], params: SamplingParams) -> list[list[Completion]]:
        import time

        sp = self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
        )
        t0 = time.perf_counter()
        outs = self.llm.chat([as_messages(p) for p in prompts], sp, use_tqdm=True)
        res = [
            [Completion(o.text.strip(), len(o.token_ids), o.finish_reason == "stop") for o in out.outputs] for out in outs
        ]
        n_tok = sum(c.n_tokens for r in res for c in r)
        self.last_stats = GenerationStats(len(prompts) * params.n, n_tok, time.perf_counter() - t0)
        budget.count(generated_tokens=n_tok)
        return res


def vllm_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
