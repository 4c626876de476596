"""PIT's prompts as a versioned data file (`methods/pit/prompts/<version>.yaml`): the improver's turn
and the reward-gap model's text. `Prompts.describe()` (version and file hash) goes into metrics.json."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DIR = Path(__file__).parent / "prompts"
DEFAULT_VERSION = "v1"


@dataclass(frozen=True)
class Prompts:
    version: str
    improve: str  # {instruction}, {response}
    gap: str  # {instruction}, {reference}, ending in {response}
    sha256: str

    def improve_turn(self, instruction, response: str) -> str:
        return fill(self.improve, {"instruction": as_text(instruction), "response": response})

    def gap_context(self, instruction, reference: str) -> str:
        """The gap text before `{response}`: what the reward trainer and judge get as the prompt."""
        return fill(self.gap[: -len("{response}")], {"instruction": as_text(instruction), "reference": reference})

    def describe(self) -> dict:
        return {"prompt_version": self.version, "prompt_sha256": self.sha256}


# the reward trainer's template over `gap_context`: the context is the prompt, the response follows it
GAP_TEMPLATE = "{prompt}{response}"


def fill(template: str, values: dict) -> str:
    """One pass over the template's fields: a value that itself holds "{response}" stays as it is."""
    import re

    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m.group(1)], template)


def as_text(instruction) -> str:
    """A request as text: a chat of one user turn is that turn, a longer one its HH transcript."""
    from methods.core.trainers.reward import render_prompt

    return render_prompt("{prompt}{response}", instruction)


def load_prompts(version: str = DEFAULT_VERSION) -> Prompts:
    import yaml

    path = DIR / f"{version}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in DIR.glob("*.yaml"))
        raise ValueError(f"method.prompt_version={version!r}: no {path}; known versions {known}")
    raw = path.read_bytes()
    d = yaml.safe_load(raw)
    for key, fields in (("improve", ("{instruction}", "{response}")),
                        ("gap", ("{instruction}", "{reference}", "{response}"))):
        text = d.get(key)
        if not isinstance(text, str) or any(f not in text for f in fields):
            raise ValueError(f"{path}: '{key}' must be a text with {', '.join(fields)}")
    if not d["gap"].endswith("{response}") or d["gap"].count("{response}") != 1:
        raise ValueError(f"{path}: 'gap' must end with {{response}} (once): the classifier reads the answer last")
    return Prompts(d.get("version", version), d["improve"], d["gap"], hashlib.sha256(raw).hexdigest())
