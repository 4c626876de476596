"""Versioned Self-Refine prompts: `prompts/<version>.yaml`, rendered into chat messages.

A prompt is a chat: the file's system message, then each few-shot example as a user turn (the
template filled with the example) and an assistant turn (the example's reply), then the real user
turn. `load_prompts(version)` checks the file (its `version` field must equal its name, every
template must render) and records its sha256, so a run's outputs name exactly which text was used.

Versions are data: a released file is never edited, a change is a new file. `DEFAULT_VERSION` is
what `SelfRefine.prompt_version` defaults to (conf/method/self_refine.yaml sets it explicitly);
any other version stays selectable with `method.prompt_version=<version>`.
- v1: superseded. Its few-shot examples are on the benchmark's own subjects (juggling,
  houseplants) in its constraint wording; kept only so runs that recorded v1 can be reproduced.
- v2: v1's system messages and templates with new few-shot examples on subjects outside the
  benchmark (tests/test_prompt_contamination.py checks every prompt file).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent / "prompts"
NO_FEEDBACK = "(no feedback was given)"
DEFAULT_VERSION = "v2"


def available_versions() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class PromptSet:
    version: str
    sha256: str
    spec: dict

    def describe(self) -> dict:
        return {"version": self.version, "file": f"{self.version}.yaml", "sha256": self.sha256}

    # ---- feedback -----------------------------------------------------------------------------
    def feedback_messages(self, instruction: str, answer: str) -> list[dict]:
        f = self.spec["feedback"]
        shots = [(f["user"].format(instruction=e["instruction"].strip(), answer=e["answer"].strip()), e["reply"])
                 for e in f.get("examples") or []]
        return _chat(f.get("system"), shots, f["user"].format(instruction=instruction, answer=answer))

    # ---- refine -------------------------------------------------------------------------------
    def history(self, attempts: list[tuple[str, str]]) -> str:
        """All earlier (answer, feedback) pairs, oldest first: Self-Refine keeps the whole history."""
        fmt = self.spec["refine"]["attempt"]
        return "\n\n".join(fmt.format(k=k, answer=a.strip(), feedback=(fb or "").strip() or NO_FEEDBACK)
                           for k, (a, fb) in enumerate(attempts, 1))

    def refine_messages(self, instruction: str, attempts: list[tuple[str, str]]) -> list[dict]:
        r = self.spec["refine"]
        shots = [(r["user"].format(instruction=e["instruction"].strip(),
                                   history=self.history([(a["answer"], a["feedback"]) for a in e["attempts"]])),
                  e["reply"]) for e in r.get("examples") or []]
        user = r["user"].format(instruction=instruction, history=self.history(attempts))
        return _chat(r.get("system"), shots, user)


def _chat(system: str | None, shots: list[tuple[str, str]], user: str) -> list[dict]:
    msgs = [{"role": "system", "content": system.strip()}] if system else []
    for u, a in shots:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a.strip()}]
    return msgs + [{"role": "user", "content": user}]


def load_prompts(version: str) -> PromptSet:
    """The prompt set `version`; ValueError naming the available versions when it is missing or broken."""
    import yaml

    path = PROMPTS_DIR / f"{version}.yaml"
    if not path.is_file():
        raise ValueError(f"method.prompt_version={version!r}: no {path.name} in {PROMPTS_DIR}; "
                         f"available: {available_versions()}")
    raw = path.read_bytes()
    spec = yaml.safe_load(raw)
    if not isinstance(spec, dict) or spec.get("version") != version:
        raise ValueError(f"{path}: its `version` field must be {version!r}")
    ps = PromptSet(version=version, sha256=hashlib.sha256(raw).hexdigest(), spec=spec)
    try:  # every template renders (a typo in a field name fails here, not mid-run)
        ps.feedback_messages("x", "y")
        ps.refine_messages("x", [("y", "z")])
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: a template does not render: {e!r}") from None
    return ps
