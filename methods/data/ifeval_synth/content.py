"""The gold judge's content gate (v2): is a response a substantive, on-topic answer to its request?

Only a response that passes the gate earns any score; the gate exists so that no answer that
ignores the request (empty, a constant, the prompt echoed back, a keyword list, one word repeated)
can score by meeting the formal constraints alone. `gate_failure(item, response)` returns the
first failed check's name, or None:

  empty         no words at all;
  too_short     fewer than MIN_WORDS words (everyday family) or fewer words than items requested
                (list family); MIN_WORDS is below every length the constraints allow (the smallest
                word limit is 30, the smallest sentence budget 2 sentences);
  echo          at least ECHO_SHARE of the response's word trigrams occur in the prompt;
  repetitive    (from REPEAT_MIN_WORDS words on) one content word makes up more than MAX_WORD_SHARE
                of all words, or fewer than MIN_DISTINCT_TRIGRAMS of the word trigrams are distinct
                (a decoding loop);
  not_prose     everyday family: fewer than MIN_FUNCTION_SHARE of the words are function words
                ("the", "and", "to", ...), as in a bare keyword list (English prose has 40-50%), or
                more than MAX_TOPIC_SHARE of them are the subject's own words (keyword stuffing;
                an answer on topic uses them in 5-30% of its words);
  off_topic     everyday family: no word of the subject (its phrase's content words or its topical
                keywords, compared after stripping a plural or verb ending); list family: no member
                of the requested category, or more than three times as many members of other categories.

`content_score(item, response)` is the part of the score that measures what the answer says: 1 for
an everyday request that passes the gate (the gate is its check), and for the list family the share
of the requested number of distinct category members actually named.
"""
from __future__ import annotations

from collections import Counter

from methods.data.ifeval_synth.constraints import normalise, words

MIN_WORDS = 10
ECHO_SHARE = 0.5
REPEAT_MIN_WORDS = 12
MAX_WORD_SHARE = 0.3
MIN_DISTINCT_TRIGRAMS = 0.5
MIN_FUNCTION_SHARE = 0.15
MAX_TOPIC_SHARE = 0.4

FUNCTION_WORDS = frozenset(
    """a an the and or but if so as at by for from in into of on onto to up with without about over under
    after before while when where which who whom whose what why how that this these those there here
    is are was were be been being am do does did have has had having will would can could should may
    might must shall it its it's i me my we our us you your he him his she her they them their
    not no nor very too also just than then once each every all any some more most other such only own
    same both few many much again off out because until through during between against per""".split()
)
# subject-phrase words that say nothing about the topic ("keeping", "simple", "first")
GENERIC_WORDS = frozenset(
    """keeping making getting going taking setting looking doing having using starting learning
    choosing planning writing preparing teaching sharing day days home simple small new first proper
    better few long more each three five minutes different ways way good own""".split()
)


def _stem(word: str) -> str:
    w = word.casefold()
    for suffix in ("ing", "ies", "es", "ed", "s", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def _trigrams(ws: list[str]) -> list[tuple[str, str, str]]:
    low = [w.casefold() for w in ws]
    return list(zip(low, low[1:], low[2:]))


def topic_stems(item: dict) -> set[str]:
    """Stems of the subject's content words and keywords (everyday family)."""
    phrase = [w for w in words(item.get("subject", "")) if w.casefold() not in FUNCTION_WORDS | GENERIC_WORDS]
    return {_stem(w) for w in [*phrase, *item.get("keywords", ())]}


def gate_failure(item: dict, response: str) -> str | None:
    from methods.data.ifeval_synth.lexicon import members_named

    family = item.get("family", "everyday")
    ws = words(response)
    if not ws:
        return "empty"
    if len(ws) < (item["n_items"] if family == "list" else MIN_WORDS):
        return "too_short"
    grams = _trigrams(ws)
    if grams:
        prompt_grams = set(_trigrams(words(item["instruction"])))
        if sum(g in prompt_grams for g in grams) >= ECHO_SHARE * len(grams):
            return "echo"
    if len(ws) >= REPEAT_MIN_WORDS:
        content = Counter(w.casefold() for w in ws if w.casefold() not in FUNCTION_WORDS)
        if content and content.most_common(1)[0][1] > MAX_WORD_SHARE * len(ws):
            return "repetitive"
        if len(set(grams)) < MIN_DISTINCT_TRIGRAMS * len(grams):
            return "repetitive"
    if family == "list":
        named = members_named(response)
        own = len(named.get(item["category"], ()))
        others = sum(len(v) for k, v in named.items() if k != item["category"])
        return None if own and others <= 3 * own else "off_topic"
    if sum(w.casefold() in FUNCTION_WORDS for w in ws) < MIN_FUNCTION_SHARE * len(ws):
        return "not_prose"
    stems = topic_stems(item)
    n_topic = sum(_stem(w) in stems for w in ws)
    if n_topic > MAX_TOPIC_SHARE * len(ws):
        return "not_prose"
    if not n_topic:
        return "off_topic"
    return None


def content_score(item: dict, response: str) -> float:
    """In [0, 1]; assumes the gate passed."""
    if item.get("family", "everyday") != "list":
        return 1.0
    from methods.data.ifeval_synth.lexicon import members_named

    named = members_named(normalise(response)).get(item["category"], set())
    return min(len(named), item["n_items"]) / item["n_items"]
