"""`LLMJudge`: a local causal LM as pairwise judge, read from next-token probabilities (no generation).

For each pair the judge's prompt (`prompts/pairwise_v1.txt`, alpaca_eval-style: the instruction and
two outputs labelled "m" and "M") goes through the model's chat template with the assistant turn
opened; one forward pass gives the logits of the next token, and
    p = P("M") / (P("m") + P("M"))
is the probability that the second output is better in that order. Every pair is judged in both
orders, (o1, o2) and (o2, o1), so a judge that always answers the same label ends at 1.5:
    preference = 1 + (p_forward + (1 - p_swapped)) / 2        in [1, 2], like weighted alpaca_eval.
`compare_orders` returns the two one-order preferences (for position-bias measurements).

Batched: prompts of both orders sorted by length, left padding with explicit position ids (so a
padded row gives the same logits as alone), only the last position's logits computed. Each
instruction and output is cut to `max_instruction_tokens` / `max_output_tokens` tokens of the judge's
tokenizer (with a "[...]" mark) to bound the cost of long AlpacaEval answers.
The judge's model: `model` (a model source, conf/model/*) or `model_path` (a directory or hub id);
either way on the GPU when there is one (`model_path`: in the bf16/fp16 its config names, else fp32).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from methods.core.generation import chat_ids, left_pad

PROMPTS = Path(__file__).resolve().parent / "prompts"
PLACEHOLDERS = ("{instruction}", "{output_1}", "{output_2}")
ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}


def instruction_text(instruction) -> str:
    """An item's instruction as text: a chat (list of {role, content}) becomes a transcript."""
    if isinstance(instruction, str):
        return instruction
    return "\n\n".join(f"{ROLE_NAMES.get(m['role'], m['role'])}: {m['content']}" for m in instruction)


def device_and_dtype(name_or_path: str):
    """(device, torch dtype) for a judge's model: on a GPU "cuda" and the half dtype its config names
    (bfloat16 / float16), else float32; on the CPU float32 (bf16 is slower there)."""
    import torch
    import transformers

    if not torch.cuda.is_available():
        return "cpu", torch.float32
    cfg = transformers.AutoConfig.from_pretrained(name_or_path)
    want = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    want = str(want).removeprefix("torch.") if want is not None else ""
    return "cuda", {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(want, torch.float32)


def load_prompt(name: str) -> str:
    path = Path(name) if Path(name).exists() else PROMPTS / name
    if not path.exists():
        raise ValueError(f"judge.prompt_file={name!r}: not found (nor in {PROMPTS})")
    text = path.read_text()
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise ValueError(f"judge.prompt_file={name!r}: lacks {missing}")
    return text


@dataclass
class LLMJudge:
    model: Any = None  # a ModelSource (Hydra instantiates the `model` node)
    model_path: str | None = None  # overrides `model`
    name: str = "llm"
    prompt_file: str = "pairwise_v1.txt"
    labels: Sequence[str] = ("m", "M")
    batch_size: int = 8
    max_output_tokens: int = 512
    max_instruction_tokens: int = 512
    _loaded: Any = field(default=None, init=False, repr=False)

    def validate(self, run=None) -> None:
        load_prompt(self.prompt_file)
        if len(self.labels) != 2 or len(set(self.labels)) != 2:
            raise ValueError(f"judge.labels={list(self.labels)}: need two different answer labels")
        if self.batch_size < 1 or self.max_output_tokens < 1 or self.max_instruction_tokens < 1:
            raise ValueError("judge.batch_size, judge.max_output_tokens, judge.max_instruction_tokens: must be >= 1")
        if self.model is None and not self.model_path:
            raise ValueError("judge=llm needs judge.model (a model config) or judge.model_path")
        if self.model_path and str(self.model_path).startswith((".", "/", "~")) and not Path(self.model_path).expanduser().exists():
            raise ValueError(f"judge.model_path={self.model_path}: no such directory")

    # ---- model --------------------------------------------------------------------------------
    def _load(self):
        if self._loaded is None:
            source = self.model
            if self.model_path:
                from methods.core.models import HubModel

                _, dtype = device_and_dtype(self.model_path)
                source = HubModel(self.model_path, dtype=str(dtype).removeprefix("torch."))
            model, tok = source.load(for_generation=True)  # left padding; on the GPU when there is one
            ids = []
            for label in self.labels:
                t = tok.encode(label, add_special_tokens=False)
                if len(t) != 1:
                    raise ValueError(f"judge.labels: {label!r} is {len(t)} tokens for this tokenizer; need one token")
                ids.append(t[0])
            self._loaded = (model, tok, ids, load_prompt(self.prompt_file))
        return self._loaded

    def _cut(self, tok, text: str, n: int) -> str:
        ids = tok.encode(text, add_special_tokens=False)
        return text if len(ids) <= n else tok.decode(ids[:n]) + " [...]"

    def encode(self, item: dict, out_a: str, out_b: str) -> list[int]:
        model, tok, _, template = self._load()
        filled = {
            "{instruction}": self._cut(tok, instruction_text(item["instruction"]), self.max_instruction_tokens),
            "{output_1}": self._cut(tok, out_a or "", self.max_output_tokens),
            "{output_2}": self._cut(tok, out_b or "", self.max_output_tokens),
        }
        # one pass over the template, so an output that contains "{output_2}" is not filled in again
        text, rest = "", template
        while True:
            hits = [(rest.find(p), p) for p in PLACEHOLDERS if p in rest]
            if not hits:
                break
            pos, p = min(hits)
            text, rest = text + rest[:pos] + filled[p], rest[pos + len(p):]
        text += rest
        if tok.chat_template:
            return list(chat_ids(tok, [[{"role": "user", "content": text}]], add_generation_prompt=True)[0])
        return tok.encode(text + "\n", add_special_tokens=True)

    def p_second(self, seqs: list[list[int]], batch_size: int | None = None) -> list[float]:
        """P(second label) / P(either label) at the position after each token sequence."""
        import torch

        model, tok, (id_1, id_2), _ = self._load()
        bs = batch_size or self.batch_size
        order = sorted(range(len(seqs)), key=lambda k: (-len(seqs[k]), k))
        out = [0.0] * len(seqs)
        device = next(model.parameters()).device
        for s in range(0, len(order), bs):
            batch = order[s : s + bs]
            ids, attn = left_pad([seqs[k] for k in batch], tok.pad_token_id)
            pos = (attn.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
            with torch.inference_mode():
                logits = model(input_ids=ids.to(device), attention_mask=attn.to(device),
                               position_ids=pos.to(device), logits_to_keep=1).logits[:, -1, :]
            two = torch.stack([logits[:, id_1], logits[:, id_2]], dim=-1).float().softmax(-1)[:, 1]
            for r, k in enumerate(batch):
                out[k] = float(two[r])
        return out

    # ---- judging ------------------------------------------------------------------------------
    def compare_orders(self, items, outputs_1, outputs_2) -> tuple[list[float], list[float]]:
        """(forward, swapped) one-order preferences, both for "output 2 better" in the original order."""
        if not len(items) == len(outputs_1) == len(outputs_2):
            raise ValueError(f"llm judge: {len(items)} items but {len(outputs_1)} / {len(outputs_2)} outputs")
        seqs = [self.encode(it, a, b) for it, a, b in zip(items, outputs_1, outputs_2)]
        seqs += [self.encode(it, b, a) for it, a, b in zip(items, outputs_1, outputs_2)]
        p = self.p_second(seqs)
        n = len(items)
        return [1 + x for x in p[:n]], [2 - x for x in p[n:]]

    def compare(self, items, outputs_1, outputs_2) -> list[float]:
        fwd, bwd = self.compare_orders(items, outputs_1, outputs_2)
        return [(f + b) / 2 for f, b in zip(fwd, bwd)]
