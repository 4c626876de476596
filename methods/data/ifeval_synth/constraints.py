"""Checkable constraints of the gold-judge benchmark.

A constraint is a small frozen dataclass registered under its `kind`:
- `describe()` is the English sentence appended to the request;
- `check(response)` says whether the response meets it (the response is NFKC-normalised first, so
  full-width commas, question marks and digits count as their ASCII forms);
- `to_dict()` / `from_dict()` round-trip it through JSON as {"kind": ..., **parameters};
- `sample(rng, subject)` draws the parameters from a `random.Random`.

`CONFLICTS` lists pairs of kinds that never share a prompt (contradictory or ambiguous together);
two constraints of the same kind never share one either. Parameters are chosen so that
SmolLM2-135M-Instruct, answering in 48-96 tokens, meets a moderate share of them.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from random import Random
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from methods.data.ifeval_synth.prompts import Subject

CONSTRAINTS: dict[str, type["Constraint"]] = {}

# words a prompt may ask to avoid; disjoint from every keyword, start word and end phrase (tested),
# so "include X" and "avoid Y" never contradict each other. A mix of words the model puts in most
# answers ("can", "your") and ones it uses now and then ("very", "great").
AVOID_WORDS = ("very", "also", "really", "just", "important", "great", "can", "your", "will", "make")
# openings the model produces now and then on its own ("Sure, here is..."), so the share met is not ~0
START_WORDS = ("Sure", "Here", "Yes", "Okay", "Hello", "Today")
# short, since answers are often cut at the token limit; no commas (they would contradict no_commas)
# and each starts with a capital (hence the lowercase conflicts)
END_PHRASES = ("Good luck!", "Enjoy!", "Hope this helps!", "Thank you.")

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")  # unicode letters/digits, inner apostrophes and hyphens
_BULLET = re.compile(r"^[ \t]*[*-][ \t]+(?=.*[^\W_])", re.M)  # "* * *" is a rule, not a bullet
_NUMBERED = re.compile(r"^[ \t]*\d+\.[ \t]+\S", re.M)
_TITLE = re.compile(r"<<([^<>\n]+)>>")
_FENCE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)\n?[ \t]*```", re.S | re.I)
_SENTENCE_END = re.compile(r"[.!?…]+(?=[\s\"'”’)\]]|$)|\n+")
_QUESTION = re.compile(r"[^\W_][\"'”’)\]]*[ \t]*\?")
_POSTSCRIPT = re.compile(r"^[ \t*_>#]*P\.[ \t]?S\b", re.M | re.I)


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").strip()


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


def _has_word(text: str, word: str) -> bool:
    """Whole-word, case-insensitive: "art" is not found in "start"; letters on either side break a match."""
    pat = rf"(?<![^\W_]){re.escape(normalise(word))}(?![^\W_])"
    return re.search(pat, normalise(text), re.I) is not None


def register(cls):
    CONSTRAINTS[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Constraint:
    kind: ClassVar[str] = ""

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, response: str) -> bool:
        raise NotImplementedError

    @classmethod
    def sample(cls, rng: Random, subject: Subject) -> "Constraint":
        return cls()

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(d: dict) -> "Constraint":
        return constraint_from_dict(d)


def constraint_from_dict(d: dict) -> Constraint:
    """The constraint a `to_dict()` wrote; unknown kinds and wrong parameters raise ValueError."""
    cls = CONSTRAINTS.get(d.get("kind"))
    if cls is None:
        raise ValueError(f"unknown constraint kind {d.get('kind')!r}; known kinds: {sorted(CONSTRAINTS)}")
    names = {f.name for f in fields(cls)}
    extra = set(d) - names - {"kind"}
    missing = names - set(d)
    if extra or missing:
        got = sorted(set(d) - {"kind"})
        raise ValueError(f"constraint {d['kind']!r}: expected parameters {sorted(names)}, got {got}")
    return cls(**{k: d[k] for k in names})


@register
@dataclass(frozen=True)
class Lowercase(Constraint):
    kind: ClassVar[str] = "lowercase"

    def describe(self):
        return "Write your whole answer in lowercase letters only, with no capital letters at all."

    def check(self, response):
        s = normalise(response)
        return any(ch.isalpha() for ch in s) and not any(ch.isupper() for ch in s)


@register
@dataclass(frozen=True)
class MaxWords(Constraint):
    kind: ClassVar[str] = "max_words"
    n: int = 80

    def describe(self):
        return f"Answer in fewer than {self.n} words."

    def check(self, response):
        return 0 < len(words(response)) < self.n

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice((40, 60, 90)))


@register
@dataclass(frozen=True)
class MinWords(Constraint):
    kind: ClassVar[str] = "min_words"
    n: int = 40

    def describe(self):
        return f"Answer with at least {self.n} words."

    def check(self, response):
        return len(words(response)) >= self.n

    @classmethod
    def sample(cls, rng, subject):
        # eval answers are cut at 64 tokens (~45 words): v1's 55 and 70 could not be met
        return cls(rng.choice((30, 40, 50)))


@register
@dataclass(frozen=True)
class Bullets(Constraint):
    """Exactly n lines starting with "* " or "- " and holding a word (indented ones count too)."""

    kind: ClassVar[str] = "bullets"
    n: int = 3

    def describe(self):
        return f"Your answer must contain exactly {self.n} bullet points, each on a line starting with '* '."

    def check(self, response):
        return len(_BULLET.findall(normalise(response))) == self.n

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice((2, 3)))


@register
@dataclass(frozen=True)
class Keyword(Constraint):
    """The word appears at least once (whole word, case-insensitive)."""

    kind: ClassVar[str] = "keyword"
    word: str = "water"

    def describe(self):
        return f"Include the word \"{self.word}\" in your answer."

    def check(self, response):
        return _has_word(response, self.word)

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice(subject.keywords))


@register
@dataclass(frozen=True)
class AvoidWord(Constraint):
    """The word never appears (whole word, case-insensitive); an empty answer does not count."""

    kind: ClassVar[str] = "avoid_word"
    word: str = "very"

    def describe(self):
        return f"Do not use the word \"{self.word}\" anywhere in your answer."

    def check(self, response):
        return bool(words(response)) and not _has_word(response, self.word)

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice(AVOID_WORDS))


@register
@dataclass(frozen=True)
class EndPhrase(Constraint):
    """The answer ends with the exact phrase (trailing whitespace ignored)."""

    kind: ClassVar[str] = "end_phrase"
    phrase: str = "Hope this helps!"

    def describe(self):
        return f"End your answer with the exact phrase \"{self.phrase}\", with nothing after it."

    def check(self, response):
        return normalise(response).endswith(normalise(self.phrase))

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice(END_PHRASES))


@register
@dataclass(frozen=True)
class NoCommas(Constraint):
    kind: ClassVar[str] = "no_commas"

    def describe(self):
        return "Do not use any commas in your answer."

    def check(self, response):
        s = normalise(response)  # NFKC maps the full-width comma to ","
        return bool(words(s)) and not any(c in s for c in ",、،")


@register
@dataclass(frozen=True)
class Paragraphs(Constraint):
    """Exactly n non-empty blocks separated by blank lines."""

    kind: ClassVar[str] = "paragraphs"
    n: int = 2

    def describe(self):
        return f"Write exactly {self.n} paragraphs, separated from each other by a blank line."

    def check(self, response):
        blocks = [b for b in re.split(r"\n[ \t]*\n", normalise(response)) if b.strip()]
        return len(blocks) == self.n

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice((2, 3)))


@register
@dataclass(frozen=True)
class Title(Constraint):
    """A title such as <<A rainy day>>: text inside double angle brackets, on one line.

    The description's own example, <<my title>>, copied as is, is a placeholder and does not count.
    """

    kind: ClassVar[str] = "title"
    PLACEHOLDERS: ClassVar[frozenset[str]] = frozenset({"", "my title", "title"})

    def describe(self):
        return "Give your answer a title of your own wrapped in double angle brackets, such as <<my title>>."

    def check(self, response):
        return any(t.strip().casefold() not in self.PLACEHOLDERS for t in _TITLE.findall(normalise(response)))


@register
@dataclass(frozen=True)
class JsonFormat(Constraint):
    """The whole answer, or the whole inside of one ``` / ```json fence, parses as a JSON object or array.

    Scalars are refused: a bare number or word would pass json.loads without any JSON formatting.
    """

    kind: ClassVar[str] = "json"

    def describe(self):
        return (
            "Reply with one short JSON object only (for example with an \"answer\" field), "
            "with no text before or after it."
        )

    def check(self, response):
        s = normalise(response)
        m = _FENCE.fullmatch(s)
        try:
            value = json.loads(m.group(1) if m else s)
        except ValueError:
            return False
        return isinstance(value, (dict, list))


@register
@dataclass(frozen=True)
class NumberedList(Constraint):
    """At least n lines of the form "1. text" (any numbers)."""

    kind: ClassVar[str] = "numbered"
    n: int = 3

    def describe(self):
        return f"Include a numbered list with at least {self.n} items, written as 1., 2., and so on."

    def check(self, response):
        return len(_NUMBERED.findall(normalise(response))) >= self.n

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice((2, 3, 4)))


@register
@dataclass(frozen=True)
class StartWord(Constraint):
    """The first word, after any leading markdown or quotes, is the given word (case-insensitive)."""

    kind: ClassVar[str] = "start_word"
    word: str = "Sure"

    def describe(self):
        return f"Start your answer with the word \"{self.word}\"."

    def check(self, response):
        s = normalise(response)
        m = _WORD.search(s)
        # only punctuation/markdown may precede the first word, e.g. "**Sure**" or "\"Sure,"
        if not m or any(ch.isalnum() for ch in s[: m.start()]):
            return False
        return m.group().casefold() == self.word.casefold()

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice(START_WORDS))


@register
@dataclass(frozen=True)
class MaxSentences(Constraint):
    """At most n sentences: pieces ended by . ! ? … or a line break that hold a letter ("1." is none)."""

    kind: ClassVar[str] = "max_sentences"
    n: int = 4

    def describe(self):
        return f"Use at most {self.n} sentences."

    def check(self, response):
        pieces = _SENTENCE_END.split(normalise(response))
        n = sum(1 for p in pieces if any(ch.isalpha() for ch in p))
        return 0 < n <= self.n

    @classmethod
    def sample(cls, rng, subject):
        return cls(rng.choice((2, 3, 4)))


@register
@dataclass(frozen=True)
class IncludeQuestion(Constraint):
    """Some word is directly followed by a question mark (closing quotes/brackets allowed between)."""

    kind: ClassVar[str] = "question"

    def describe(self):
        return "Include at least one question in your answer."

    def check(self, response):
        return _QUESTION.search(normalise(response)) is not None


@register
@dataclass(frozen=True)
class Postscript(Constraint):
    """A line that starts with "P.S." or "P.S" (any case; leading markdown such as "**" allowed)."""

    kind: ClassVar[str] = "postscript"

    def describe(self):
        return "At the end of your answer, add a postscript starting with \"P.S.\""

    def check(self, response):
        return _POSTSCRIPT.search(normalise(response)) is not None


def _pairs(*groups: tuple[str, tuple[str, ...]]) -> frozenset[frozenset[str]]:
    return frozenset(frozenset((a, b)) for a, bs in groups for b in bs)


# Why each pair is excluded: JSON leaves no room for other layouts or free text around it; the
# layouts (bullets, numbered list, paragraphs) contradict one another; lists and sentence counts are
# ambiguous together; a short sentence budget fights a word minimum; the fixed end phrase, start
# word and "P.S." need capitals; a title line would be the first word / an extra paragraph.
CONFLICTS = _pairs(
    ("json", ("bullets", "numbered", "paragraphs", "title", "end_phrase", "start_word", "postscript",
              "no_commas", "max_sentences")),
    ("max_words", ("min_words",)),
    ("bullets", ("numbered", "paragraphs", "max_sentences")),
    ("numbered", ("paragraphs", "max_sentences")),
    ("min_words", ("max_sentences",)),
    ("lowercase", ("end_phrase", "start_word", "postscript")),
    ("end_phrase", ("postscript",)),
    ("title", ("start_word", "paragraphs")),
)


def conflicts(kind_a: str, kind_b: str) -> bool:
    return kind_a == kind_b or frozenset((kind_a, kind_b)) in CONFLICTS


def sample_constraints(rng: Random, subject: Subject, k: int, exclude=()) -> list[Constraint]:
    """k mutually compatible constraints: kinds drawn one by one among those that fit the ones chosen."""
    chosen: list[Constraint] = []
    for _ in range(k):
        options = [kind for kind in sorted(CONSTRAINTS)
                   if kind not in exclude and not any(conflicts(kind, c.kind) for c in chosen)]
        if not options:
            raise ValueError(f"no constraint kind fits with {[c.kind for c in chosen]}")
        chosen.append(CONSTRAINTS[rng.choice(options)].sample(rng, subject))
    return chosen
