"""An OpenAI-compatible chat model as Self-Refine's generator (for users who have an API key).

`OpenAIChat` offers the engine's call, `generate(prompts, params) -> list[list[Completion]]`, over the
`openai` client (any OpenAI-compatible server through `base_url`). It is built lazily: constructing
it (config validation) touches neither the network nor the client; `validate()` only checks that
the `openai` package is importable and that the key's environment variable is set.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Sequence

from methods.core.generation import Completion, SamplingParams, as_messages


@dataclass
class OpenAIChat:
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # e.g. a local vLLM / llama.cpp server's /v1
    api_key_env: str = "OPENAI_API_KEY"
    max_workers: int = 8  # requests in flight
    max_retries: int = 3
    timeout_s: float = 120.0
    # newer OpenAI models take `max_completion_tokens` instead of `max_tokens`
    max_tokens_param: str = "max_tokens"
    send_seed: bool = True  # some compatible servers reject `seed`

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def validate(self) -> None:
        if not os.environ.get(self.api_key_env):
            raise ValueError(f"method.backend: set the {self.api_key_env} environment variable to use the API "
                             f"model {self.model!r} (or run method=self_refine without a backend, on the "
                             "local model)")
        if importlib.util.find_spec("openai") is None:
            raise ValueError("method.backend: the `openai` package is not installed (pip install openai)")
        if self.max_workers < 1:
            raise ValueError(f"method.backend.max_workers={self.max_workers}: must be ≥ 1")

    def _client(self):
        if getattr(self, "_cached_client", None) is None:
            self.validate()
            from openai import OpenAI

            self._cached_client = OpenAI(api_key=os.environ[self.api_key_env], base_url=self.base_url,
                                         max_retries=self.max_retries, timeout=self.timeout_s)
        return self._cached_client

    def _one(self, prompt, params: SamplingParams) -> list[Completion]:
        kwargs = {"model": self.model, "messages": as_messages(prompt), "n": params.n,
                  "temperature": params.temperature, "top_p": params.top_p,
                  self.max_tokens_param: params.max_new_tokens}
        if self.send_seed:
            kwargs["seed"] = params.seed
        r = self._client().chat.completions.create(**kwargs)
        # usage is per request; split it over the choices (approximate when n > 1)
        per = (r.usage.completion_tokens // max(len(r.choices), 1)) if r.usage else 0
        return [Completion(text=(c.message.content or "").strip(), n_tokens=per,
                           finished=c.finish_reason == "stop") for c in r.choices]

    def generate(self, prompts: Sequence, params: SamplingParams) -> list[list[Completion]]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.max_workers) as pool:  # map keeps prompt order
            return list(pool.map(lambda p: self._one(p, params), list(prompts)))
