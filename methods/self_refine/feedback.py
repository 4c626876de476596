"""Parsing the model's feedback: a critique, a numeric score, and whether it asks for no change.

The feedback prompt asks for
    Feedback: <what to fix, or "No changes needed.">
    Score: <0-10>/10
but a small model drifts from any format, so `parse_feedback` reads what it can and never raises:
- the reply is first cut at the first turn marker of the prompt format ("Request:", a chat-template
  token, a "Human:"/"User:" line): a small model often runs on into an invented next few-shot turn,
  whose made-up score must not count;
- score: the first labelled score ("Score: 7/10", "score = 8", "**Rating:** 4 out of 5", "Score: 7.5"),
  else a bare fraction alone on its own line ("8/10", "**4 out of 5**"; a fraction inside a sentence,
  "cut it to 3 out of 5 lines", is no score); put on the 0..`scale` scale (a denominator rescales
  it, "85" without one on a 10 scale reads as a percentage); None when there is none or it is out
  of range;
- no_change: an explicit statement that nothing needs changing ("No changes needed.", "no change is
  required", "nothing to fix", "needs no edits") that is the critique's opening sentence (or all of
  it) and is not qualified: "No changes needed except the date", "the second sentence needs no
  change, but the first is too long" and "No changes needed. However, ..." are not no-change; a
  critique that merely contains "no" is not one either. (The loop also lets a score below its
  `stop_score` override a no-change statement.)
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
# a fraction alone on its line, maybe in markup or brackets: "8/10", "**4 out of 5**", "(7/10)."
BARE = re.compile(r"^[\s*_(\[]*" + _NUM + r"\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)[\s*_)\].!]*$", re.I | re.M)
NO_CHANGE = re.compile(
    r"\bno\s+(?:further\s+|more\s+)?(?:change|edit|revision|improvement|fixe?)s?\s+(?:(?:is|are)\s+)?"
    r"(?:needed|required|necessary)\b"
    r"|\bnothing\s+(?:(?:needs|left)\s+)?to\s+(?:change|improve|fix)\b"
    r"|\b(?:needs|requires)\s+no\s+(?:further\s+)?(?:change|edit|revision|fixe?)s?\b"
    r"|^\s*no\s+changes?\.?\s*$",
    re.I | re.M,
)
# words that turn "no change" into "a change": "no changes needed except ...", "... but ...".
QUALIFIER = re.compile(r"\b(?:except|but|however|apart\s+from|aside\s+from|other\s+than|besides|save\s+for|"
                       r"although|though|yet)\b", re.I)
# where an invented next turn begins: the feedback user template opens with "Request:"; chat-template
# tokens and role labels mark a turn in any format
TURN = re.compile(r"\bRequest\s*:|<\|(?:im_start|im_end|endoftext|user|assistant)\|>|^\s*(?:Human|User)\s*:",
                  re.M)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_LABEL = re.compile(r"^\W*(?:feedback|critique)\W*:\W*", re.I)


@dataclass(frozen=True)
class Feedback:
    text: str  # the reply cut at the first invented turn: what was parsed and what the refine prompt shows
    critique: str  # without its score and "Feedback:" label
    score: float | None  # on 0..scale; None when no usable score was found
    no_change: bool
    raw: str = ""  # the reply as generated

    @property
    def parsed(self) -> bool:
        return self.score is not None or self.no_change


def cut_turns(text: str) -> str:
    """The reply up to the first turn marker (an invented next few-shot turn is dropped)."""
    m = TURN.search(text)
    return (text[: m.start()] if m else text).strip()


def parse_score(text: str, scale: float = 10.0) -> float | None:
    """The first usable labelled score, else a bare fraction alone on its line, on 0..scale; None if none."""
    for pattern in (LABELLED, BARE):
        for m in pattern.finditer(text):
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


def says_no_change(critique: str) -> bool:
    """The critique opens with (or is) an unqualified "no change needed" statement."""
    sentences = [s for s in _SENTENCE.split(critique.strip()) if s.strip()]
    if not sentences or not NO_CHANGE.search(sentences[0]) or QUALIFIER.search(sentences[0]):
        return False
    # "No changes needed. However, the date is missing.": the next sentence takes it back
    return len(sentences) == 1 or not QUALIFIER.match(sentences[1].lstrip(" *_-,"))


def _strip_scores(line: str) -> str:
    """A line without its labelled score(s) and what follows them, or without a bare-fraction line."""
    m = LABELLED.search(line)
    if m:
        line = line[: m.start()]
    if BARE.fullmatch(line):
        return ""
    return line.rstrip() if re.search(r"\w", line) else ""


def parse_feedback(text: str | None, scale: float = 10.0) -> Feedback:
    raw = (text or "").strip()
    text = cut_turns(raw)
    score = parse_score(text, scale)
    # the critique is what the refine step needs: drop the scores and the format's label
    lines = [s for s in (_strip_scores(ln) for ln in text.splitlines()) if s]
    critique = _LABEL.sub("", "\n".join(lines).strip(), count=1).strip()
    return Feedback(text=text, critique=critique, score=score, no_change=says_no_change(critique), raw=raw)
