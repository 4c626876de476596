"""Gold judge v2 as a spec: hand-written answers per item family, in the order the benchmark must rank them.

For every family: relevant + constraints met > relevant + constraints missed > irrelevant +
constraints met; and answers that ignore the request (empty, constants, the prompt echoed, keyword
lists, one word repeated) score 0 on every eval item, below the base model's measured mean.
No model is run here; the base model's mean is the committed demo measurement (results/demo/sft/).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from methods.data.ifeval_synth import IFEvalSynth
from methods.data.ifeval_synth import constraints as C
from methods.data.ifeval_synth.content import gate_failure
from methods.data.ifeval_synth.lexicon import categories, members_named
from methods.judges.gold import GOLD_VERSION, W_CONTENT, GoldJudge

REPO = Path(__file__).resolve().parents[1]
JUDGE = GoldJudge()


def everyday(constraints, request="Give me some practical tips for baking bread at home.",
             subject="baking bread at home", keywords=("flour", "dough", "oven")):
    cons = [c.to_dict() for c in constraints]
    return {"id": "h-e", "family": "everyday", "request": request, "subject": subject, "keywords": list(keywords),
            "instruction": " ".join([request, *(c.describe() for c in constraints)]), "constraints": cons}


def listing(constraints, n=4, cat="fruits", template="Name {n} different {c}."):
    request = template.format(n={3: "three", 4: "four", 5: "five"}[n], c=cat)
    return {"id": "h-l", "family": "list", "request": request, "subject": cat, "category": cat, "n_items": n,
            "instruction": " ".join([request, *(c.describe() for c in constraints)]),
            "constraints": [c.to_dict() for c in constraints]}


EVERYDAY = everyday([C.NoCommas(), C.Lowercase()])
RELEVANT_MET = "mix the flour with warm water and yeast and knead the dough for ten minutes before it rises."
RELEVANT_MISSED = "First, mix the flour with warm water and yeast. Then knead the dough well and let it rise."
IRRELEVANT_MET = "the football match last night was exciting and the fans sang loudly until the final whistle."

LIST = listing([C.Lowercase()])
LIST_MET = "apples, bananas, pears and plums are four fruits that i like to eat."
LIST_HALF = "apples and bananas are the fruits that i like to eat most of all."
LIST_MISSED = "Apples, bananas, pears and plums are four fruits that I like."
LIST_IRRELEVANT_MET = "dogs, cats, horses and cows are animals that i like to see on a farm."


def test_everyday_order_and_values():
    s = JUDGE.score([EVERYDAY] * 3, [RELEVANT_MET, RELEVANT_MISSED, IRRELEVANT_MET])
    assert s == [1.0, pytest.approx(W_CONTENT), 0.0]
    assert JUDGE.details(EVERYDAY, IRRELEVANT_MET)["gate"] == "off_topic"
    # one of two constraints met: 0.4 + 0.6 * 0.5
    one = "Mix the flour with warm water and yeast and knead the dough for ten minutes before it rises."
    assert JUDGE.score([EVERYDAY], [one]) == [pytest.approx(0.7)]


def test_list_order_and_values():
    s = JUDGE.score([LIST] * 4, [LIST_MET, LIST_HALF, LIST_MISSED, LIST_IRRELEVANT_MET])
    # content 4/4, 2/4, 4/4, gate; lowercase met, met, missed, met
    assert s == [1.0, pytest.approx(0.4 * 0.5 + 0.6), pytest.approx(0.4), 0.0]
    assert s[0] > s[2] > s[3] and s[0] > s[1]
    assert JUDGE.details(LIST, LIST_IRRELEVANT_MET)["gate"] == "off_topic"


def test_list_counts_distinct_members_and_masks_longer_names():
    item = listing([C.Lowercase()], n=3, cat="vegetables")
    # "potato masher" is a kitchen utensil, not a potato; "carrots" and "carrot" are one member
    assert members_named("a potato masher, carrots and a carrot") == {"kitchen utensils": {"potato masher"},
                                                                     "vegetables": {"carrot"}}
    out = "i cook carrots, a carrot, leeks and peas with a potato masher for my lunch today."
    assert JUDGE.details(item, out)["content"] == pytest.approx(3 / 3)
    # naming more members of other categories than of the one asked for is off topic
    stuffed = "i like carrots and also apples, pears, plums and bananas, and red and blue things."
    assert JUDGE.details(item, stuffed)["gate"] == "off_topic"


def test_compare_follows_scores():
    assert JUDGE.compare([EVERYDAY] * 3, [RELEVANT_MET, IRRELEVANT_MET, RELEVANT_MISSED],
                         [RELEVANT_MISSED, RELEVANT_MISSED, RELEVANT_MISSED]) == [1.0, 2.0, 1.5]


@pytest.mark.parametrize("answer,reason", [
    ("", "empty"),
    ("yes?", "too_short"),
    ("<<t>>\n\nok?", "too_short"),
    ("flour dough oven bread baking home flour dough oven bread baking home", "not_prose"),
    ("flour dough oven bread baking yeast knead loaf crust rise salt water", "not_prose"),
    ("bread " * 30, "repetitive"),
    ("the bread is good and the bread is good and the bread is good and the bread is good", "repetitive"),
    ("Give me some practical tips for baking bread at home. Do not use any commas in your answer.", "echo"),
])
def test_degenerate_answers_fail_the_gate(answer, reason):
    assert gate_failure(EVERYDAY, answer) == reason
    assert JUDGE.score([EVERYDAY], [answer]) == [0.0]


def test_details_and_version():
    d = JUDGE.details(EVERYDAY, RELEVANT_MISSED)
    assert d == {"gate": None, "content": 1.0, "constraints": {"no_commas": False, "lowercase": False},
                 "score": pytest.approx(W_CONTENT)}
    assert JUDGE.version == GOLD_VERSION == "gold-v2"


def test_lexicon_is_well_formed():
    cats = categories()
    assert len(cats) >= 20 and all(len(c.members) >= 25 for c in cats)
    assert len({c.name for c in cats}) == len(cats)
    # every member is found as itself and in its category alone (after masking longer names)
    for c in cats:
        for m in c.members:
            assert members_named(f"I said {m} once.") == {c.name: {m}}, (c.name, m)


def degenerate_outputs(item: dict) -> dict[str, str]:
    topic = [*item.get("keywords", ()), *item["subject"].split()]
    return {
        "empty": "",
        "yes?": "yes?",
        "<<t>> ok?": "<<t>>\n\nok?",
        "constant sentence": "Sure! Here is my answer. I hope this helps you with your question today. Good luck!",
        "echo": item["instruction"],
        "keyword list": " ".join((topic * 4)[:14]),
        "repeated word": " ".join([topic[0]] * 40),
    }


def test_degenerate_answers_score_below_the_base_model_on_the_eval_set():
    items = IFEvalSynth(seed=0).eval()
    names = degenerate_outputs(items[0])
    base = json.loads((REPO / "results" / "demo" / "sft" / "metrics.json").read_text())
    assert base["judge_version"] == GOLD_VERSION and base["n_total"] == len(items)
    assert 0.3 <= base["judge_score"] <= 0.6  # the benchmark's design target for SmolLM2's greedy answers
    for name in names:
        scores = JUDGE.score(items, [degenerate_outputs(it)[name] for it in items])
        mean = sum(scores) / len(scores)
        assert mean < 0.5 * base["judge_score"], (name, mean)
        if name != "constant sentence":
            assert mean == 0.0, name


def test_every_eval_and_training_item_is_scorable():
    data = IFEvalSynth(seed=0, n_labelled=512)
    items = data.eval() + data.labelled() + data.unlabelled(1)
    assert {it["family"] for it in items} == {"everyday", "list"}
    scores = JUDGE.score(items, [it["request"] for it in items])  # the request alone is an echo
    assert scores == [0.0] * len(items)
