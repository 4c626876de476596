"""Words that would name a check of the embedded default's gold judge (data=ifeval_synth's constraint
kinds, its fixed start words and end phrases) in a principle. SSO's principles must stay generic, or
the gold judge leaks into training: the versioned files are checked against this list by the tests,
and a principle a model writes (`principles=written`) that hits it is replaced by drawn features."""
from __future__ import annotations

# every constraint kind of methods/data/ifeval_synth/constraints.py, with the words that name it
CONSTRAINT_VOCABULARY = {
    "avoid_word": ["do not use the word"], "bullets": ["bullet"], "end_phrase": ["end your answer", "end with"],
    "json": ["json"], "keyword": ["keyword", "include the word"], "lowercase": ["lowercase", "lower case", "capital"],
    "max_sentences": ["sentence"], "max_words": ["words", "word count", "fewer than"],
    "min_words": ["words", "at least"], "no_commas": ["comma"], "numbered": ["numbered", "list"],
    "paragraphs": ["paragraph"], "postscript": ["postscript", "p.s"], "question": ["question mark"],
    "start_word": ["start your answer", "begin"], "title": ["title", "<<"],
}


def leaks(text: str) -> list[str]:
    """The constraint kinds (or fixed phrases) `text` names; empty when it names none."""
    from methods.data.ifeval_synth.constraints import END_PHRASES, START_WORDS

    low = text.lower()
    hits = [kind for kind, terms in CONSTRAINT_VOCABULARY.items() if any(t in low for t in terms)]
    hits += [f"end phrase {p!r}" for p in END_PHRASES if p.lower() in low]
    words = set(text.replace(".", " ").replace(",", " ").replace("!", " ").split())
    hits += [f"start word {w!r}" for w in START_WORDS if w in words]
    return hits
