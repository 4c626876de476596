"""The list family's categories (`lexicons.json`, data written for this project) and member matching.

A member is one name or several spellings joined by '|' ("goose|geese"); regular plurals ("-s",
"-es") are added to every spelling. Matching is whole-word and
case-insensitive, longest form first, and a matched span is masked before shorter forms are tried,
so "potato masher" counts as a kitchen utensil and not also as a vegetable.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from methods.data.ifeval_synth.constraints import normalise

LEXICON_FILE = Path(__file__).with_name("lexicons.json")


@dataclass(frozen=True)
class Category:
    name: str  # a plural noun phrase that reads in a request: "fruits", "parts of the body"
    members: tuple[str, ...]  # canonical names (the first spelling of each entry)


def _key(form: str) -> str:
    return re.sub(r"[\s\-]+", " ", form.strip().casefold())


def _plurals(form: str) -> tuple[str, ...]:
    """The form, and the regular plurals "-s" and "-es" (irregular ones are listed in the file)."""
    return (form,) if form.endswith("s") else (form, form + "s", form + "es")


@lru_cache(maxsize=1)
def _load() -> tuple[int, tuple[Category, ...], tuple[tuple[str, str, str], ...]]:
    raw = json.loads(LEXICON_FILE.read_text(encoding="utf-8"))
    cats, forms = [], []
    for c in raw["categories"]:
        members = []
        for entry in c["words"]:
            spellings = [s.strip().casefold() for s in entry.split("|")]
            members.append(spellings[0])
            forms += [(_key(f), c["name"], spellings[0]) for s in spellings for f in _plurals(s)]
        cats.append(Category(c["name"], tuple(members)))
    forms.sort(key=lambda f: (-len(f[0]), f[0]))  # longest first: see the module's docstring
    return raw["version"], tuple(cats), tuple(forms)


def lexicon_version() -> int:
    return _load()[0]


def categories() -> tuple[Category, ...]:
    return _load()[1]


def category(name: str) -> Category:
    for c in categories():
        if c.name == name:
            return c
    raise ValueError(f"unknown list category {name!r}; known: {[c.name for c in categories()]}")


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern:
    forms = _load()[2]
    alts = "|".join(r"[\s\-]+".join(map(re.escape, f.split(" "))) for f, _, _ in forms)
    return re.compile(rf"(?<![^\W_])(?:{alts})(?![^\W_])", re.I)


def members_named(text: str) -> dict[str, set[str]]:
    """category name -> the distinct members the text names (canonical names)."""
    lookup = {f: (cat, member) for f, cat, member in _load()[2]}
    found: dict[str, set[str]] = {}
    # alternation tries the forms in list order (longest first) at each position, then moves past
    # the match: that is the masking described above
    for m in _pattern().finditer(normalise(text)):
        cat, member = lookup[_key(m.group())]
        found.setdefault(cat, set()).add(member)
    return found
