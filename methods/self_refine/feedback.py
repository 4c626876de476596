"""Parsing the model's feedback: a critique, a numeric score, and whether it asks for no change.

The feedback prompt asks for
    Feedback: <what to fix, or "No changes needed.">
    Score: <0-10>/10
but a small model drifts from any format, so `parse_feedback` reads what it can and never raises:
- score: the last labelled score ("Score: 7/10", "score = 8", "**Rating:** 4 out of 5", "Score: 7.5"),
  else the last bare fraction ("8/10", "4 out of 5"); put on the 0..`scale` scale (a denominator
  rescales it, "85" without one on a 10 scale reads as a percentage); None when there is none or it
  is out of range;
- no_change: an explicit statement that nothing needs changing ("No changes needed.", "no change is
  required", "nothing to fix", "needs no edits"); a critique that merely contains "no" is not one;
- parsed: a score or a no-change statement was found. Unparsable feedback is counted by the loop,
  which then refines with the raw text as the critique (the run goes on).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"(-?\d+(?:\.\d+)?)"
_DEN = r"(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?"
# "Score: 7/10", "score = 8", "**Score:** 9", "Rating - 4 out of 5", "score of 6", "score is 3"
LABELLED = re.compile(r"\b(?:score|rating)\b[\s*_]*(?:[:=\-]|\bis\b|\bof\b)?[\s*_]*" + _NUM + _DEN, re.I)
BARE = re.compile(r"(?<![\w.])" + _NUM + r"\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)\b", re.I)
NO_CHANGE = re.compile(
    r"\bno\s+(?:further\s+|more\s+)?(?:change|edit|revision|improvement|fixe?)s?\s+(?:(?:is|are)\s+)?"
    r"(?:needed|required|necessary)\b"
    r"|\bnothing\s+(?:(?:needs|left)\s+)?to\s+(?:change|improve|fix)\b"
    r"|\b(?:needs|requires)\s+no\s+(?:further\s+)?(?:change|edit|revision|fixe?)s?\b"
    r"|^\s*no\s+changes?\.?\s*$",
    re.I | re.M,
)
_LABEL = re.compile(r"^\W*(?:feedback|critique)\W*:\W*", re.I)


@dataclass(frozen=True)
class Feedback:
    text: str  # the reply as generated (what the refine prompt shows)
    critique: str  # without its score line and "Feedback:" label
    score: float | None  # on 0..scale; None when no usable score was found
    no_change: bool

    @property
    def parsed(self) -> bool:
        return self.score is not None or self.no_change


def parse_score(text: str, scale: float = 10.0) -> float | None:
    """The last labelled score, else the last bare fraction, on the 0..scale scale; None if none."""
    matches = list(LABELLED.finditer(text)) or list(BARE.finditer(text))
    for m in reversed(matches):
        value = _normalise(float(m.group(1)), m.group(2), scale)
        if value is not None:
            return value
    return None


def _normalise(value: float, den: str | None, scale: float) -> float | None:
    if value < 0:
        return None
    if den is not None:
        d = float(den)
        return value / d * scale if 0 < d and value <= d else None
    if value <= scale:
        return value
    return value / 100 * scale if value <= 100 else None  # "Score: 85" on a 10 scale: a percentage


def parse_feedback(text: str | None, scale: float = 10.0) -> Feedback:
    text = (text or "").strip()
    score = parse_score(text, scale)
    # the critique is what the refine step needs: drop score lines and the format's label
    lines = [ln for ln in text.splitlines() if not LABELLED.search(ln)]
    critique = _LABEL.sub("", "\n".join(lines).strip(), count=1).strip()
    return Feedback(text=text, critique=critique, score=score, no_change=bool(NO_CHANGE.search(text)))
