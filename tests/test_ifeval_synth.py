"""The gold-judge benchmark: every checker, the splits, and the gold judge's scores."""
from __future__ import annotations

import pytest

from methods.data.ifeval_synth import REGISTRY, Constraint, IFEvalSynth
from methods.data.ifeval_synth import constraints as C
from methods.judges.gold import GoldJudge

CASES = [  # (constraint, a response that meets it, one that does not)
    (C.Lowercase(), "all lower case here.", "Not all lower."),
    (C.MaxWords(n=5), "four words are here", "this answer has six words"),
    (C.MinWords(n=3), "one two three", "one two"),
    (C.Bullets(n=2), "* first\n* second", "* only one"),
    (C.Keyword(word="easy"), "It is Easy to do.", "It is simple."),
    (C.Avoid(word="very"), "It is quite good.", "It is very good."),
    (C.EndWith(phrase="Good luck!"), "Try it. Good luck!  \n", "Good luck! Try it."),
    (C.NoCommas(), "No commas at all.", "Yes, one comma."),
    (C.Paragraphs(n=2), "First part.\n\nSecond part.", "One block.\nStill one."),
    (C.Title(), "<<Tea time>>\nBoil water.", "<Tea time>\nBoil water."),
    (C.Json(), '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
    (C.Numbered(n=2), "1. first\n2. second\n3. third", "1. first\n3. third"),
    (C.StartWith(word="Sure"), "Sure, here it is.", "Surely not."),
    (C.MaxSentences(n=2), "One. Two!", "One. Two. Three."),
    (C.Question(), "Ready to try?", "Ready to try."),
]


def test_every_kind_has_a_case():
    assert {type(c).kind for c, _, _ in CASES} == set(REGISTRY)
    assert len(REGISTRY) >= 12


@pytest.mark.parametrize("con,good,bad", CASES, ids=[type(c).kind for c, _, _ in CASES])
def test_checker(con, good, bad):
    assert con.check(good) is True
    assert con.check(bad) is False
    assert con.describe()
    assert Constraint.from_dict(con.to_dict()) == con


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="unknown constraint kind 'shout'"):
        Constraint.from_dict({"kind": "shout"})


def test_splits_deterministic_and_disjoint():
    a, b = IFEvalSynth(seed=3), IFEvalSynth(seed=3)
    assert a.labelled() == b.labelled() and a.eval() == b.eval() and a.unlabelled(2) == b.unlabelled(2)
    train = a.labelled() + [it for i in (1, 2, 3) for it in a.unlabelled(i)]
    ids = [it["id"] for it in train + a.eval()]
    assert len(ids) == len(set(ids))
    assert len({it["instruction"] for it in train + a.eval()}) == len(ids)
    train_requests = {it["request"] for it in train}
    train_subjects = {it["subject"] for it in train}
    assert not any(it["request"] in train_requests or it["subject"] in train_subjects for it in a.eval())
    assert len(a.eval()) == 200
    assert IFEvalSynth(seed=4).labelled() != a.labelled()


def test_eval_set_does_not_depend_on_training_sizes():
    assert IFEvalSynth(n_labelled=16, n_unlabelled=[4]).eval() == IFEvalSynth().eval()


@pytest.mark.parametrize("fraction,size", [(0.1, 52), (0.5, 256), (1.0, 512), (0.001, 1)])
def test_seed_is_a_prefix_of_the_pool(fraction, size):
    d = IFEvalSynth(seed_fraction=fraction)
    assert d.seed_items() == d.labelled()[:size]


def test_no_conflicting_constraints():
    d = IFEvalSynth(seed=1, n_labelled=900, n_unlabelled=[580], n_eval=900)
    for it in d.labelled() + d.unlabelled(1) + d.eval():
        kinds = [c["kind"] for c in it["constraints"]]
        assert 1 <= len(kinds) <= 3 and len(set(kinds)) == len(kinds)
        for k in kinds:
            assert not (REGISTRY[k].conflicts & set(kinds)), (k, kinds)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(seed_fraction=0), "seed_fraction"), (dict(seed_fraction=1.5), "seed_fraction"),
    (dict(n_eval=0), "sizes"), (dict(n_eval=10**6), "n_eval"), (dict(n_constraints=[0, 2]), "n_constraints"),
])
def test_validate_names_the_setting(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        IFEvalSynth(**kwargs)


def test_gold_judge_scores_and_prefers():
    item = {"id": "x", "instruction": "...", "constraints": [C.NoCommas().to_dict(), C.Keyword(word="tea").to_dict()]}
    judge = GoldJudge()
    both, one, none = "I like tea.", "Tea, please.", "Coffee, please."
    assert judge.score([item] * 3, [both, one, none]) == [1.0, 0.5, 0.0]
    assert judge.compare([item] * 3, [both, none, one], [one, one, "tea, yes"]) == [1.0, 2.0, 1.5]
    with pytest.raises(ValueError, match="only works on ifeval_synth"):
        judge.score([{"id": "y", "instruction": "hi"}], ["x"])
