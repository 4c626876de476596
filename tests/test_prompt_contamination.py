"""No prompt file of a method or judge (few-shot examples included) shares a subject or constraint
wording with the ifeval_synth benchmark, whose splits it would otherwise leak into.

What counts as the benchmark is read from its modules at run time, so subjects, categories or
constraint kinds added later are covered without editing this file:
- `prompts.SUBJECTS` (every split's subjects: eval takes a fifth of them, training the rest) and the
  names of any `CATEGORIES` / `categories()` (the list family), looked up with getattr;
- every sentence `describe()` gives for each class in `constraints.CONSTRAINTS`: its defaults
  (`cls()`), plus the sentences `cls.sample` draws for every subject.

Two levels:
- `findings` (every prompt file): a subject phrase or category name (case-insensitive, whole words,
  any line breaks) or a constraint sentence verbatim;
- `near_findings` (every file but the superseded LEGACY ones): a subject's content words in order
  and inflected ("learned to juggle three balls"), a constraint sentence with other parameters
  ("Answer in fewer than 30 words."), or a request template with its slots filled.
"""
from __future__ import annotations

import importlib
import random
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import fields
from functools import cache

import pytest

from tests.conftest import REPO

# superseded versions kept so that runs recording them can be reproduced; never the default
LEGACY = {"methods/self_refine/prompts/v1.yaml"}
# words that carry no topic: a near match needs a subject's other words
STOP = frozenset("a an the to of for in on at with by from into up out and or your my one each more".split())
GAP = 2  # words allowed between two consecutive content words of a subject in a near match


def prompt_files() -> list:
    found = {p for pattern in ("methods/*/prompts/**/*", "methods/judges/prompts/**/*")
             for p in REPO.glob(pattern) if p.is_file() and "__pycache__" not in p.parts}
    return sorted(found)


def _rel(path) -> str:
    return path.relative_to(REPO).as_posix()


# ---- the benchmark, as its modules define it now ---------------------------------------------------
@cache
def _subject_phrases() -> list[str]:
    from methods.data.ifeval_synth import prompts

    return [s if isinstance(s, str) else s.phrase for s in prompts.SUBJECTS]


@cache
def _category_names() -> list[str]:
    names: set[str] = set()
    for name in ("methods.data.ifeval_synth", "methods.data.ifeval_synth.prompts",
                 "methods.data.ifeval_synth.lexicon"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        cats = getattr(mod, "CATEGORIES", None)
        if cats is None and callable(getattr(mod, "categories", None)):
            cats = mod.categories()
        if isinstance(cats, Mapping):
            cats = list(cats)  # keyed by name
        for c in cats or ():
            names.add(c if isinstance(c, str) else c.name)
    return sorted(names)


@cache
def _defaults() -> dict[str, object]:
    """kind -> the constraint built with its defaults."""
    from methods.data.ifeval_synth.constraints import CONSTRAINTS

    return {kind: cls() for kind, cls in CONSTRAINTS.items()}


@cache
def _constraint_sentences() -> list[str]:
    from methods.data.ifeval_synth import prompts
    from methods.data.ifeval_synth.constraints import CONSTRAINTS

    out = {c.describe() for c in _defaults().values()}
    for cls in CONSTRAINTS.values():
        for k, subject in enumerate(prompts.SUBJECTS):
            for seed in range(3):
                out.add(cls.sample(random.Random(f"{seed}/{k}"), subject).describe())
    return sorted(out)


@cache
def _constraint_templates() -> list[re.Pattern]:
    """Each default sentence with its parameters' values as wildcards: the wording, any parameters."""
    pats = []
    for c in _defaults().values():
        pieces = [_norm(c.describe())]
        for f in fields(c):
            value = _norm(str(getattr(c, f.name)))
            if value:
                pieces = [part for p in pieces for part in _split_keep(p, value)]
        pats.append(re.compile("".join(".{1,40}?" if p is _SLOT else re.escape(p) for p in pieces), re.I))
    return pats


_SLOT = object()


def _split_keep(piece, value):
    if piece is _SLOT:
        return [piece]
    parts = piece.split(value)
    out = [parts[0]]
    for p in parts[1:]:
        out += [_SLOT, p]
    return out


@cache
def _request_templates() -> list[re.Pattern]:
    """The benchmark's request templates, every {slot} a wildcard."""
    from methods.data.ifeval_synth import prompts

    pats = []
    for name in dir(prompts):
        value = getattr(prompts, name)
        if name.isupper() and name.endswith("TEMPLATES") and isinstance(value, (tuple, list)):
            for t in value:
                pieces = re.split(r"\{\w*\}", _norm(t))
                pats.append(re.compile(".{1,80}?".join(map(re.escape, pieces)), re.I))
    return pats


# ---- the checks --------------------------------------------------------------------------------
def _norm(text: str) -> str:
    """NFKC, one space for any run of whitespace: a phrase folded over lines in a file still matches."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def _phrase(p: str) -> re.Pattern:
    words = _norm(p).split(" ")
    return re.compile(r"(?<![^\W_])" + r"\s+".join(map(re.escape, words)) + r"(?![^\W_])", re.I)


def _stem(word: str) -> str:
    """A crude stem, enough to match "learned"/"learning", "juggle"/"juggling", "balls"/"ball"."""
    w = word.casefold().replace("’", "'").removesuffix("'s").strip("'")
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    return w.removesuffix("e") if len(w) > 3 else w


def _stems(text: str) -> str:
    return " ".join(_stem(w) for w in re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text))


def _near(phrase: str) -> re.Pattern:
    content = [_stem(w) for w in _norm(phrase).split(" ") if w.casefold() not in STOP]
    if len(content) < 2:  # one word alone is no subject; the exact check still sees the phrase
        return None
    gap = rf"(?: \S+){{0,{GAP}}} "
    return re.compile(r"(?<!\S)" + gap.join(map(re.escape, content)) + r"(?!\S)")


def _texts(path) -> list[str]:
    """The file as written, and for YAML every string in it as parsed (quotes and escapes resolved)."""
    raw = path.read_text(encoding="utf-8")
    texts = [raw]
    if path.suffix in (".yaml", ".yml"):
        import yaml

        def leaves(x):
            if isinstance(x, str):
                yield x
            elif isinstance(x, Mapping):
                for v in x.values():
                    yield from leaves(v)
            elif isinstance(x, list):
                for v in x:
                    yield from leaves(v)

        texts.append("\n\n".join(leaves(yaml.safe_load(raw))))
    return texts


def findings(text: str) -> list[str]:
    """What of the benchmark `text` contains, exactly: subject phrases, category names, constraint sentences."""
    norm = _norm(text)
    found = [f"subject {p!r}" for p in _subject_phrases() if _phrase(p).search(norm)]
    found += [f"category {c!r}" for c in _category_names() if _phrase(c).search(norm)]
    low = norm.casefold()
    found += [f"constraint sentence {s!r}" for s in _constraint_sentences() if _norm(s).casefold() in low]
    return found


def near_findings(text: str) -> list[str]:
    """Benchmark wording with other details: inflected subjects, reworded parameters, filled templates."""
    norm, stems = _norm(text), _stems(text)
    found = [f"near subject {p!r}" for p in _subject_phrases() if (pat := _near(p)) and pat.search(stems)]
    found += [f"constraint wording {m.group()!r}" for pat in _constraint_templates() if (m := pat.search(norm))]
    found += [f"request template {m.group()!r}" for pat in _request_templates() if (m := pat.search(norm))]
    return found


# ---- the tests ---------------------------------------------------------------------------------
def test_the_checks_see_the_benchmark_and_catch_contaminated_text():
    phrases, sentences = _subject_phrases(), _constraint_sentences()
    assert len(phrases) >= 20 and len(sentences) >= len(_defaults()) >= 10  # nothing to compare is no check
    clean = "Feedback: The shop name is good, but the reason runs to two sentences. Merge them.\nScore: 6/10"
    assert findings(clean) == [] and near_findings(clean) == []
    # a subject phrase in other case and folded over a line, as in a YAML file
    first, *rest = phrases[-1].split(" ", 1)
    text = f"Request: give tips on {first.upper()}\n    {rest[0] if rest else ''}. Thanks."
    assert f"subject {phrases[-1]!r}" in findings(text)
    for c in list(_defaults().values())[:3] + list(_defaults().values())[-2:]:  # a constraint sentence verbatim
        assert f"constraint sentence {c.describe()!r}" in findings(f"Write a poem. {c.describe()} Go.")
    for name in _category_names()[:3]:  # the list family, when the benchmark has one
        assert f"category {name!r}" in findings(f"Tell me about {name.upper()}.")
    # v1's own contamination, which the exact checks miss
    near = near_findings("Hey Sam! I finally learned to juggle three balls. Answer in fewer than 30 words.")
    assert "near subject 'learning to juggle three balls'" in near
    assert any(f.startswith("constraint wording 'Answer in fewer than 30 words.'") for f in near), near


def test_prompt_files_exist():
    files = {_rel(p) for p in prompt_files()}
    assert files, "no prompt files found under methods/*/prompts/"
    from methods.self_refine.prompts import DEFAULT_VERSION

    assert f"methods/self_refine/prompts/{DEFAULT_VERSION}.yaml" in files
    assert any(f.startswith("methods/judges/prompts/") for f in files)  # the LLM judge's prompt
    assert LEGACY <= files  # a stale exemption would hide nothing, but should go


@pytest.mark.parametrize("path", prompt_files(), ids=_rel)
def test_prompt_file_shares_no_subject_or_constraint_sentence_with_the_benchmark(path):
    for text in _texts(path):
        assert findings(text) == [], f"{_rel(path)} uses the benchmark's text"


@pytest.mark.parametrize("path", [p for p in prompt_files() if _rel(p) not in LEGACY], ids=_rel)
def test_prompt_file_avoids_the_benchmarks_wording(path):
    for text in _texts(path):
        assert near_findings(text) == [], f"{_rel(path)} uses the benchmark's wording"


def test_legacy_prompts_are_contaminated_and_not_the_default():
    """Why they are superseded; and the default prompt version is a clean one."""
    from methods.self_refine.prompts import DEFAULT_VERSION

    for rel in LEGACY:
        assert near_findings((REPO / rel).read_text(encoding="utf-8")), f"{rel} is clean: drop it from LEGACY"
    assert f"methods/self_refine/prompts/{DEFAULT_VERSION}.yaml" not in LEGACY
