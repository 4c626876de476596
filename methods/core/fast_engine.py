"""A faster generation engine behind `HFEngine`'s interface, exact in distribution.

`FastEngine.generate(prompts, SamplingParams) -> list[list[Completion]]` takes the same prompts
(chat template, generation prompt) and returns the same results type as `HFEngine`, from the same
fp32 model through its own `forward`. What differs is the loop around the forward:

- a preallocated KV cache (`SlotCache`): per layer one tensor (rows, kv_heads, slots, head_dim),
  written in place, one slot per step per row, instead of a cache concatenated every step;
- continuous batching: when a sequence stops (EOS or max_new_tokens) its row is freed; free rows go
  to the end of the batch (the last live rows are moved into the holes, one row copy each) and are
  refilled with waiting prompts, prefilled together, so the batch never decodes padding until its
  longest sequence ends, and the tail of a call shrinks the batch instead of decoding finished rows;
- each row has its own slots, positions and attention mask: the mask handed to the model is an
  explicit 4D boolean mask (keys `start[r] ≤ slot ≤ current[r]`), position ids count each row's
  real tokens, exactly what `generate` computes for a left-padded row;
- `n > 1` samples of a prompt that are prefilled together share one prefill (its KV rows copied);
- sampling is the math of HF's `TemperatureLogitsWarper` then `TopPLogitsWarper`
  (min_tokens_to_keep=1), softmax and `torch.multinomial`, in one function with no processor list;
  greedy (temperature 0) is the argmax of the fp32 logits. A private `torch.Generator` seeded from
  `params.seed` makes a call deterministic without touching the global RNG.

Greedy outputs equal `HFEngine`'s (same tokens, counts and `finished` flags, up to ties that fp32
rounding could flip); sampled outputs have the same distribution but not the same random stream.
`tests/test_fast_engine.py` checks both on the tiny model. Full-attention decoders only (the mask
is built here; sliding-window layers would need their own), attention through `sdpa` or `eager`.
"""
from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from typing import Sequence

from methods.core import budget
from methods.core.generation import (
    Completion,
    GenerationStats,
    HFEngine,
    Messages,
    SamplingParams,
    _as_list,
    as_messages,
    chat_ids,
    left_pad,
)

log = logging.getLogger(__name__)


def top_p_filter(scores, top_p: float, min_tokens_to_keep: int = 1):
    """HF's `TopPLogitsWarper.__call__`, the same operations: nucleus filtering of (rows, vocab) scores."""
    import torch

    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_indices_to_remove = cumulative_probs <= (1 - top_p)
    sorted_indices_to_remove[..., -min_tokens_to_keep:] = 0
    indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)
    return scores.masked_fill(indices_to_remove, -float("inf"))


def next_tokens(logits, temperature: float, top_p: float, generator=None):
    """One token per row: argmax when temperature is 0, else what `generate(do_sample=True,
    temperature, top_p, top_k=0)` draws: temperature (skipped at 1.0, as HF does), top-p (skipped at
    1.0), softmax, multinomial."""
    import torch

    scores = logits.to(torch.float32)
    if temperature == 0:
        return torch.argmax(scores, dim=-1)
    if temperature != 1.0:
        scores = scores / temperature
    if top_p < 1.0:
        scores = top_p_filter(scores, top_p)
    probs = torch.nn.functional.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


class SlotCache:
    """A preallocated KV cache with per-row write slots, duck-typed for transformers' attention layers.

    The layers call `update(key, value, layer_idx, ...)` and attend over what it returns. Before each
    forward the engine says what the call is: `prefill(rows, width)` writes the (len(rows), h, width, d)
    prompt states into slots [0, width) of those rows and returns them as they are; `decode(n, slot,
    length)` writes each of the first n rows' single new state at its own `slot[r]` and returns views
    of slots [0, length) (no copy). Tensors are allocated on the first write of each layer.
    """

    is_compileable = False

    def __init__(self, rows: int, slots: int):
        self.rows, self.slots = rows, slots
        self.keys: dict[int, object] = {}
        self.values: dict[int, object] = {}
        self._mode: tuple = ()
        self._arange = None

    def prefill(self, rows, width: int) -> None:
        self._mode = ("prefill", rows, width)

    def decode(self, n: int, slot, length: int) -> None:
        import torch

        if self._arange is None or self._arange.device != slot.device:
            self._arange = torch.arange(self.rows, device=slot.device)
        self._mode = ("decode", n, slot, length)

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        if layer_idx not in self.keys:
            _, h, _, d = key_states.shape
            shape = (self.rows, h, self.slots, d)
            self.keys[layer_idx] = key_states.new_zeros(shape)
            self.values[layer_idx] = value_states.new_zeros(shape)
        k, v = self.keys[layer_idx], self.values[layer_idx]
        if self._mode[0] == "prefill":
            _, rows, width = self._mode
            k[rows, :, :width] = key_states
            v[rows, :, :width] = value_states
            return key_states, value_states
        _, n, slot, length = self._mode
        rows = self._arange[:n]
        k[rows, :, slot] = key_states[:, :, 0]
        v[rows, :, slot] = value_states[:, :, 0]
        return k[:n, :, :length], v[:n, :, :length]

    def copy_rows(self, src, dst, length: int) -> None:
        """Slots [0, length) of rows `src` into rows `dst` (compaction, shared prefills)."""
        for t in (*self.keys.values(), *self.values.values()):
            t[dst, :, :length] = t[src, :, :length]

    # what a transformers model may ask a cache it did not build
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.keys)


def _cache_kwarg(model) -> str:
    """transformers 5.24 renamed `past_key_values` to `cache`; use what this model's forward takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _check_supported(model) -> None:
    cfg = model.config
    types = getattr(cfg, "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        raise ValueError(f"FastEngine: layer types {sorted(set(types))}: only full attention is supported; "
                         "use backend=hf")
    if not types and getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        raise ValueError("FastEngine: a sliding-window model is not supported; use backend=hf")
    impl = getattr(cfg, "_attn_implementation", "sdpa")
    if impl not in ("sdpa", "eager"):
        raise ValueError(f"FastEngine: attention implementation {impl!r}: sdpa or eager only; use backend=hf")


class FastEngine:
    """Continuous batching on a preallocated KV cache, over a transformers model's own forward."""

    def __init__(self, model, tokenizer, batch_size: int = 64, progress: bool = True,
                 refill_min: int | None = None):
        _check_supported(model)
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.progress = progress
        # free rows are refilled once this many are free (one prefill call for several prompts)
        self.refill_min = refill_min if refill_min is not None else max(1, batch_size // 16)
        self.last_stats = GenerationStats()
        self._cache_kw = _cache_kwarg(model)

    def encode(self, prompts: Sequence[str | Messages]) -> list[list[int]]:
        return chat_ids(self.tokenizer, [as_messages(p) for p in prompts], add_generation_prompt=True)

    # HFEngine's context-length refusal, the same code, where that engine has it
    context_length = getattr(HFEngine, "context_length", lambda self: None)
    _check_context = getattr(HFEngine, "_check_context", lambda self, ids, max_new_tokens: None)

    def _forward(self, cache, **inputs):
        return self.model(**inputs, **{self._cache_kw: cache}, use_cache=True).logits[:, -1]

    def generate(self, prompts: Sequence[str | Messages], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions for each prompt, in prompt order. Deterministic for a given seed."""
        import torch
        from tqdm.auto import tqdm

        ids = self.encode(prompts) if len(prompts) else []
        self._check_context(ids, params.max_new_tokens)
        jobs = [(i, j) for i in range(len(ids)) for j in range(params.n)]
        jobs.sort(key=lambda ij: (-len(ids[ij[0]]), ij))  # longest prompts first, as HFEngine
        results: list[list[Completion | None]] = [[None] * params.n for _ in ids]
        stats = GenerationStats(n_sequences=len(jobs))
        self.last_stats = stats
        if not jobs:
            return results  # type: ignore[return-value]
        tok, model = self.tokenizer, self.model
        device = model.device
        eos = {tok.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
        eos.discard(None)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        max_new, temp, top_p = params.max_new_tokens, params.temperature, params.top_p
        gen = torch.Generator(device=device)
        gen.manual_seed(params.seed * 1_000_003)

        B = min(self.batch_size, len(jobs))
        cache = SlotCache(B, max(len(ids[i]) for i, _ in jobs) + max_new)
        # per-row state: tensors for the forward, lists for the bookkeeping; rows [0, n) are live
        start = torch.zeros(B, dtype=torch.long, device=device)  # first valid slot
        cur = torch.zeros(B, dtype=torch.long, device=device)  # slot of the row's last token
        pos = torch.zeros(B, dtype=torch.long, device=device)  # position id of that token
        last = torch.zeros(B, dtype=torch.long, device=device)  # the token fed next
        row_job: list[tuple[int, int] | None] = [None] * B
        row_out: list[list[int]] = [[] for _ in range(B)]
        n = 0
        queue = deque(jobs)
        t0 = time.perf_counter()
        steps = prefills = row_steps = 0
        bar = tqdm(total=len(jobs), desc="generate", disable=not self.progress, leave=False)

        def accept(rows: range, toks: list[int]) -> list[int]:
            """Append each row's new token; the rows that stopped, their results recorded."""
            done = []
            for r, t in zip(rows, toks):
                out = row_out[r]
                out.append(t)
                stop = t in eos
                if stop or len(out) >= max_new:
                    i, j = row_job[r]
                    text = tok.decode(out[:-1] if stop else out, skip_special_tokens=True).strip()
                    results[i][j] = Completion(text=text, n_tokens=len(out), finished=stop, token_ids=tuple(out))
                    stats.n_tokens += len(out)
                    done.append(r)
            if done:
                bar.update(len(done))
            return done

        def compact(done: list[int]) -> None:
            """Drop finished rows: live rows from the end move into the holes; n shrinks."""
            nonlocal n
            gone = set(done)
            new_n = n - len(gone)
            holes = [r for r in range(new_n) if r in gone]
            srcs = [r for r in range(new_n, n) if r not in gone]
            if holes:
                src = torch.tensor(srcs, device=device)
                dst = torch.tensor(holes, device=device)
                cache.copy_rows(src, dst, int(cur[src].max()) + 1)
                for t in (start, cur, pos, last):
                    t[dst] = t[src]
                for s, d in zip(srcs, holes):
                    row_job[d], row_out[d] = row_job[s], row_out[s]
            for r in range(new_n, n):
                row_job[r], row_out[r] = None, []
            n = new_n

        with torch.inference_mode():
            while queue or n:
                free = B - n
                if queue and (n == 0 or free >= min(self.refill_min, len(queue))):
                    take = [queue.popleft() for _ in range(min(free, len(queue)))]
                    rows = range(n, n + len(take))
                    first = self._prefill(cache, ids, take, rows, start, cur, pos, pad, device)
                    prefills += 1
                    for r, job in zip(rows, take):
                        row_job[r], row_out[r] = job, []
                    toks = next_tokens(first, temp, top_p, gen)
                    last[n : n + len(take)] = toks
                    n += len(take)
                    done = accept(rows, toks.tolist())
                    if done:
                        compact(done)
                    continue  # refill again at once if rows were freed and prompts wait
                # one decode step of the n live rows
                cur[:n] += 1
                pos[:n] += 1
                slot = cur[:n]
                length = int(slot.max()) + 1
                keys = torch.arange(length, device=device)
                mask = (keys >= start[:n, None]) & (keys <= slot[:, None])
                cache.decode(n, slot, length)
                logits = self._forward(
                    cache, input_ids=last[:n, None], attention_mask=self._mask(mask[:, None, None, :]),
                    position_ids=pos[:n, None],
                )
                toks = next_tokens(logits, temp, top_p, gen)
                last[:n] = toks
                steps += 1
                row_steps += n
                done = accept(range(n), toks.tolist())
                if done:
                    compact(done)
        bar.close()
        stats.seconds = time.perf_counter() - t0
        budget.count(generated_tokens=stats.n_tokens)
        stats.extra = {"decode_steps": steps, "prefill_calls": prefills,
                       "mean_rows": row_steps / steps if steps else 0.0, "batch_size": B}
        log.info("generated %d sequences, %d tokens, %.1f tok/s",
                 stats.n_sequences, stats.n_tokens, stats.tokens_per_second)
        return results  # type: ignore[return-value]

    def _mask(self, mask):
        """The boolean mask as the attention implementation takes it (eager adds it to the scores)."""
        if getattr(self.model.config, "_attn_implementation", "sdpa") == "eager":
            import torch

            dtype = next(self.model.parameters()).dtype
            zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
            return zeros.masked_fill(~mask, torch.finfo(dtype).min)
        return mask

    def _prefill(self, cache, ids, take, rows, start, cur, pos, pad, device):
        """Prompts `take` into `rows` (left-padded together); logits of each row's next token.

        Samples of one prompt in the same prefill share its forward: its KV rows are copied."""
        import torch

        uniq: dict[int, int] = {}
        for i, _ in take:
            uniq.setdefault(i, len(uniq))
        prompt_ids = list(uniq)
        which = [uniq[i] for i, _ in take]  # row -> index among the unique prompts
        first_row = {}
        for r, u in zip(rows, which):
            first_row.setdefault(u, r)
        input_ids, attn = left_pad([ids[i] for i in prompt_ids], pad)
        input_ids, attn = input_ids.to(device), attn.to(device)
        width = input_ids.size(1)
        position_ids = attn.cumsum(-1) - 1  # as `generate` does for left padding
        position_ids.masked_fill_(attn == 0, 1)
        q = torch.arange(width, device=device)
        causal = q[None, :] <= q[:, None]  # [query, key]
        diagonal = torch.eye(width, dtype=torch.bool, device=device)
        mask = (causal[None] & attn[:, None, :].bool()) | diagonal[None]
        # (the diagonal keeps padded queries off an all-masked row: no NaN; real queries never see pads)
        target = torch.tensor([first_row[u] for u in range(len(prompt_ids))], device=device)
        cache.prefill(target, width)
        logits = self._forward(
            cache, input_ids=input_ids, attention_mask=self._mask(mask[:, None]), position_ids=position_ids,
            logits_to_keep=1,
        )
        dups = [(first_row[u], r) for r, u in zip(rows, which) if first_row[u] != r]
        if dups:
            cache.copy_rows(torch.tensor([s for s, _ in dups], device=device),
                            torch.tensor([d for _, d in dups], device=device), width)
        lens = torch.tensor([len(ids[i]) for i, _ in take], device=device)
        sl = slice(rows.start, rows.stop)
        start[sl] = width - lens
        cur[sl] = width - 1
        pos[sl] = lens - 1
        return logits[torch.tensor(which, device=device)]
