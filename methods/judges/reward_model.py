"""`RewardModelJudge`: a sequence-classification reward model (one logit) scoring each output.

`score(items, outputs)`: r(x, y) for each pair, from `AutoModelForSequenceClassification` (hub id
or local directory) on the chat [user: instruction, assistant: output] through the model's chat
template, or "instruction\\n\\noutput" when it has none; batched with left padding, and the score is
read where the model's own forward reads it, the rightmost token that is not `config.pad_token_id`
(each row's true last token when the config names no pad id; the token before a final eos when the
pad id is eos, as TRL trains a classifier whose tokenizer pads with eos); a text over
`max_length` tokens loses its start, never the end of the answer where the score is read. On the GPU
when there is one (in the bf16/fp16 its config names, else fp32).
`compare`: `preference="sigmoid"` (default) gives 1 + σ(r2 − r1), the Bradley-Terry probability
that output 2 is better, which a reward model trained on −log σ(r_chosen − r_rejected) estimates;
`preference="hard"` gives `preference_from_scores` (1, 1.5 or 2).
`template` (e.g. SER's "Question: {prompt}\n\nAnswer: {response}") scores the rendered text plus the EOS
token instead of the chat, exactly what `RewardTrainerSpec` with the same template trained on.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from methods.judges.base import preference_from_scores, sigmoid
from methods.judges.llm import device_and_dtype, instruction_text

MODES = ("sigmoid", "hard")


@dataclass
class RewardModelJudge:
    name_or_path: str
    name: str = "reward_model"
    preference: str = "sigmoid"
    batch_size: int = 8
    max_length: int = 1024
    template: str | None = None  # null = the chat template (or "instruction\n\noutput" without one)
    _loaded: Any = field(default=None, init=False, repr=False)
    _takes_position_ids: bool = field(default=False, init=False, repr=False)

    def validate(self, run=None) -> None:
        if self.preference not in MODES:
            raise ValueError(f"judge.preference={self.preference!r}: choose one of {list(MODES)}")
        p = str(self.name_or_path)
        if p.startswith((".", "/", "~")) and not (Path(p).expanduser() / "config.json").exists():
            raise ValueError(f"judge.name_or_path={p}: no config.json there")
        if self.batch_size < 1 or self.max_length < 2:
            raise ValueError("judge.batch_size must be >= 1 and judge.max_length >= 2")
        if self.template is not None:
            from methods.core.trainers.reward import check_template

            check_template(self.template, "judge.template")

    def _load(self):
        if self._loaded is None:
            import transformers

            device, dtype = device_and_dtype(self.name_or_path)
            tok = transformers.AutoTokenizer.from_pretrained(self.name_or_path)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(self.name_or_path, dtype=dtype)
            model.eval().to(device)
            if model.config.num_labels != 1:
                raise ValueError(f"judge.name_or_path={self.name_or_path}: a reward model has one output, "
                                 f"this one has {model.config.num_labels}")
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token  # any id will do for the padding itself: it is masked out
            # The classifier reads the rightmost token that is not `config.pad_token_id` (the last
            # position when the config names none): the position it was trained at. A model trained by
            # TRL with pad = eos (RewardTrainerSpec, on a tokenizer without a pad token) learned its score
            # at the token before the final eos, and is read there. Left padding keeps each row's read
            # position where the forward finds it.
            tok.padding_side = "left"
            tok.truncation_side = "left"  # over max_length: drop the start, keep the answer's end
            if model.config.pad_token_id is None:  # batched forwards need one; -1 never occurs in input_ids,
                model.config.pad_token_id = -1  # so the last position is read: the true last token
            self._takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters
            self._loaded = (model, tok)
        return self._loaded

    def _text(self, tok, item: dict, output: str) -> str:
        if self.template is not None:
            from methods.core.trainers.reward import render_prompt

            return render_prompt(self.template, item["instruction"]) + (output or "") + tok.eos_token
        if tok.chat_template:
            prompt = item["instruction"]
            chat = ([{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt))
            return tok.apply_chat_template(chat + [{"role": "assistant", "content": output or ""}], tokenize=False)
        return f"{instruction_text(item['instruction'])}\n\n{output or ''}"

    def score(self, items, outputs) -> list[float]:
        import torch

        if len(items) != len(outputs):
            raise ValueError(f"reward model: {len(items)} items but {len(outputs)} outputs")
        model, tok = self._load()
        texts = [self._text(tok, it, o) for it, o in zip(items, outputs)]
        scores = []
        for s in range(0, len(texts), self.batch_size):
            enc = tok(texts[s : s + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                      max_length=self.max_length,
                      add_special_tokens=self.template is not None or not tok.chat_template)
            inputs = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            if self._takes_position_ids:  # left padding must not shift a row's positions
                inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = model(**inputs).logits
            scores += [float(x) for x in logits[:, 0].float()]
        return scores

    def compare(self, items, outputs_1, outputs_2) -> list[float]:
        s1, s2 = self.score(items, outputs_1), self.score(items, outputs_2)
        if self.preference == "hard":
            return [preference_from_scores(a, b) for a, b in zip(s1, s2)]
        return [1 + sigmoid(b - a) for a, b in zip(s1, s2)]


