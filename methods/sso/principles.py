"""SSO's principles: the versioned files next to this module, the per-query draw, and the steered prompts.

    x⁺ = [system: p⁺, user: x]      x⁻ = [system: p⁻, user: x]      (x a text, or a chat: its own
                                                                     system turn, if any, is replaced)
`features` (v1 / the code): `n_features` of the file's features drawn per query, plus concision with its
probability; p± = the chosen features' good (bad) sentences joined. `written` (v2): a model writes p⁺ and
p⁻ per query from `writer.yaml`'s few-shot prompt (`parse_written` reads its reply).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
PRINCIPLES_FILE = HERE / "principles.yaml"
WRITER_FILE = HERE / "writer.yaml"


@dataclass(frozen=True)
class Principles:
    version: int
    features: dict  # name -> {good, bad}
    concision: dict  # {probability, good, bad}

    @classmethod
    def load(cls, path: str | Path = PRINCIPLES_FILE) -> "Principles":
        import yaml

        raw = yaml.safe_load(Path(path).read_text())
        where = str(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("features"), dict) or not raw["features"]:
            raise ValueError(f"{where}: needs a `features` mapping of name -> {{good, bad}}")
        for name, f in [*raw["features"].items(), ("concision", raw.get("concision"))]:
            if not isinstance(f, dict) or not all(isinstance(f.get(k), str) and f[k].strip() for k in ("good", "bad")):
                raise ValueError(f"{where}: feature {name!r} needs non-empty `good` and `bad` texts")
        p = raw["concision"].get("probability")
        if not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"{where}: concision.probability={p!r}: a number in [0, 1]")
        return cls(int(raw.get("version", 0)), dict(raw["features"]), dict(raw["concision"]))

    def texts(self) -> list[str]:
        return [f[k] for f in [*self.features.values(), self.concision] for k in ("good", "bad")]

    def draw(self, rng: random.Random, n_features: int) -> tuple[str, str, list[str]]:
        """(p⁺, p⁻, the feature names) for one query."""
        if not 1 <= n_features <= len(self.features):
            raise ValueError(f"method.n_features={n_features}: between 1 and {len(self.features)}")
        names = list(self.features)
        picked = sorted(rng.sample(range(len(names)), n_features))
        chosen = [names[k] for k in picked]
        parts = [self.features[n] for n in chosen]
        if rng.random() < self.concision["probability"]:
            chosen.append("concision")
            parts.append(self.concision)
        return " ".join(p["good"] for p in parts), " ".join(p["bad"] for p in parts), chosen


def steer(query, principle: str | None) -> list[dict] | str:
    """The query with `principle` as its system message (None: the query as it is)."""
    if principle is None:
        return query
    turns = [{"role": "user", "content": query}] if isinstance(query, str) else \
        [t for t in query if t["role"] != "system"]
    return [{"role": "system", "content": principle}, *turns]


@dataclass(frozen=True)
class Writer:
    version: int
    system: str
    template: str
    examples: list

    @classmethod
    def load(cls, path: str | Path = WRITER_FILE) -> "Writer":
        import yaml

        raw = yaml.safe_load(Path(path).read_text())
        if "{query}" not in raw.get("template", ""):
            raise ValueError(f"{path}: the template needs a {{query}} field")
        return cls(int(raw.get("version", 0)), raw["system"], raw["template"], list(raw.get("examples") or []))

    def chat(self, query) -> list[dict]:
        """System, the examples as user/assistant turns, then the query's request."""
        text = query if isinstance(query, str) else next(t["content"] for t in reversed(query) if t["role"] == "user")
        turns = [{"role": "system", "content": self.system}]
        for ex in self.examples:
            turns += [{"role": "user", "content": self.template.replace("{query}", ex["query"])},
                      {"role": "assistant", "content": f"GOOD: {ex['good']}\nBAD: {ex['bad']}"}]
        return turns + [{"role": "user", "content": self.template.replace("{query}", text)}]

    def texts(self) -> list[str]:
        return [self.system, self.template, *(ex[k] for ex in self.examples for k in ("good", "bad"))]


_LINE = re.compile(r"^\s*(GOOD|BAD)\s*:\s*(.+?)\s*$", re.M | re.I)


def parse_written(reply: str) -> tuple[str, str] | None:
    """(p⁺, p⁻) from a writer's reply, or None without both lines (or with the two equal)."""
    found = {}
    for key, text in _LINE.findall(reply or ""):
        found.setdefault(key.upper(), text)
    good, bad = found.get("GOOD"), found.get("BAD")
    return (good, bad) if good and bad and good != bad else None
