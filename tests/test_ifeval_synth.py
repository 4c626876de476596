"""The `ifeval_synth` benchmark and its gold judge: checkers, prompt generation, splits. No model."""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from random import Random

import pytest

from methods.data.ifeval_synth import (
    CONSTRAINTS,
    SUBJECTS,
    TEMPLATES,
    IFEvalSynth,
    conflicts,
    constraint_from_dict,
    sample_constraints,
)
from methods.data.ifeval_synth import constraints as C
from methods.judges.gold import GoldJudge

REPO = Path(__file__).resolve().parents[1]

# (constraint, response, expected): at least one pass and one fail per kind
CHECKS = [
    (C.Lowercase(), "all lower case here, with numbers 3 and élan.", True),
    (C.Lowercase(), "Not all lowercase.", False),
    (C.Lowercase(), "an Élan", False),
    (C.Lowercase(), "123 !!", False),  # no letters: nothing was written in lowercase
    (C.MaxWords(5), "one two three four", True),
    (C.MaxWords(5), "one two three four five", False),
    (C.MaxWords(5), "   ", False),
    (C.MinWords(5), "one two three four five", True),
    (C.MinWords(5), "don't count-me twice", False),
    (C.Bullets(2), "Intro\n* first point\n- second point", True),
    (C.Bullets(2), "* a\n* b\n* c", False),
    (C.Bullets(2), "* * *\n  * a\n* b", True),  # a "* * *" rule is not a bullet; indented bullets count
    (C.Bullets(2), "*bold*\n* a", False),
    (C.Keyword("water"), "Give it WATER daily.", True),
    (C.Keyword("water"), "Use a watering can.", False),
    (C.AvoidWord("very"), "Everything is fine.", True),
    (C.AvoidWord("very"), "It is Very good.", False),
    (C.AvoidWord("very"), "", False),
    (C.EndPhrase("Good luck!"), "Try it once more. Good luck!  \n\n", True),
    (C.EndPhrase("Good luck!"), "Good luck! See you soon.", False),
    (C.NoCommas(), "No commas in this one.", True),
    (C.NoCommas(), "Yes, there is one.", False),
    (C.NoCommas(), "full-width\uff0ccomma", False),
    (C.Paragraphs(2), "First part.\n\nSecond part.", True),
    (C.Paragraphs(2), "One.\n \nTwo.\n\nThree.", False),
    (C.Paragraphs(2), "One.\nStill one.", False),
    (C.Title(), "<<Basil on the Sill>>\nWater it.", True),
    (C.Title(), "<<my title>>\nWater it.", False),  # the description's placeholder, copied
    (C.Title(), "No title at all.", False),
    (C.Title(), "<<  >> empty", False),
    (C.JsonFormat(), '{"answer": "water the basil"}', True),
    (C.JsonFormat(), '```json\n{"a": [1, 2]}\n```', True),
    (C.JsonFormat(), ' [1, 2] \n', True),
    (C.JsonFormat(), 'Here it is: {"a": 1}', False),
    (C.JsonFormat(), '{"a": 1,}', False),
    (C.JsonFormat(), '"a bare string"', False),
    (C.NumberedList(2), "Steps:\n1. Fill the pot\n2. Add rice", True),
    (C.NumberedList(2), "1. Only one", False),
    (C.NumberedList(2), "1.5 is a number\n2.0 too", False),
    (C.StartWord("Sure"), "Sure, here it is.", True),
    (C.StartWord("Sure"), "**Sure!** Here it is.", True),
    (C.StartWord("Sure"), "I am sure.", False),
    (C.StartWord("Sure"), "Surely not.", False),
    (C.MaxSentences(2), "One sentence. Two sentences!", True),
    (C.MaxSentences(2), "1. Water it.\n", True),  # a list number alone is not a sentence
    (C.MaxSentences(2), "One. Two. Three?", False),
    (C.MaxSentences(2), "", False),
    (C.IncludeQuestion(), "Have you tried it?", True),
    (C.IncludeQuestion(), "Is it \u201cfine\u201d?", True),
    (C.IncludeQuestion(), "No questions here.", False),
    (C.IncludeQuestion(), "???", False),
    (C.Postscript(), "Main text.\n\nP.S. Bring gloves.", True),
    (C.Postscript(), "Main text.\n**p.s.** later", True),
    (C.Postscript(), "Main text. PS is not a postscript line.", False),
]


@pytest.mark.parametrize("constraint,response,expected", CHECKS, ids=lambda x: getattr(x, "kind", None))
def test_checker(constraint, response, expected):
    assert constraint.check(response) is expected


def test_every_kind_has_a_pass_and_a_fail_example():
    results = {(c.kind, e) for c, _, e in CHECKS}
    assert {k for k, e in results if e} == set(CONSTRAINTS) == {k for k, e in results if not e}
    assert len(CONSTRAINTS) >= 12


@pytest.mark.parametrize("kind", sorted(CONSTRAINTS))
def test_describe_and_round_trip(kind):
    rng = Random(kind)
    for subject in SUBJECTS[:10]:
        c = CONSTRAINTS[kind].sample(rng, subject)
        assert c.kind == kind and c.describe().strip().endswith((".", '"', "'"))
        d = json.loads(json.dumps(c.to_dict()))
        assert d["kind"] == kind
        assert constraint_from_dict(d) == c == C.Constraint.from_dict(d)


def test_from_dict_refuses_unknown_kinds_and_parameters():
    with pytest.raises(ValueError, match="unknown constraint kind 'shout'"):
        constraint_from_dict({"kind": "shout"})
    with pytest.raises(ValueError, match="max_words"):
        constraint_from_dict({"kind": "max_words", "n": 5, "m": 1})
    with pytest.raises(ValueError, match="max_words"):
        constraint_from_dict({"kind": "max_words"})


def test_word_pools_never_contradict():
    keywords = {k.casefold() for s in SUBJECTS for k in s.keywords}
    fixed = {w.casefold() for w in C.START_WORDS} | {w.casefold() for p in C.END_PHRASES for w in C.words(p)}
    assert not {w.casefold() for w in C.AVOID_WORDS} & (keywords | fixed)
    assert not any("," in p for p in C.END_PHRASES)
    for c in (C.EndPhrase(p) for p in C.END_PHRASES):
        assert c.check("Done. " + c.phrase)


def test_request_pool_is_large_and_well_formed():
    assert len(TEMPLATES) >= 40 and len(SUBJECTS) >= 60
    assert all(t.count("{s}") == 1 for t in TEMPLATES)
    assert len({t for t in TEMPLATES}) == len(TEMPLATES)
    assert len({s.phrase for s in SUBJECTS}) == len(SUBJECTS)
    assert all(s.keywords for s in SUBJECTS)


def test_conflicting_kinds_never_share_a_prompt():
    rng = Random(0)
    prompts = [sample_constraints(rng, SUBJECTS[i % len(SUBJECTS)], 4) for i in range(3000)]
    data = IFEvalSynth(n_labelled=1500, n_unlabelled=(1000,), n_eval=800)
    prompts += [[constraint_from_dict(c) for c in it["constraints"]] for it in data.labelled() + data.eval()]
    for cons in prompts:
        for a, b in itertools.combinations(cons, 2):
            assert not conflicts(a.kind, b.kind), (a, b)


def test_item_fields_and_instruction():
    data = IFEvalSynth(n_eval=50, n_constraints=(1, 3))
    common = {"id", "family", "instruction", "request", "subject", "constraints"}
    fields = {"everyday": common | {"keywords"}, "list": common | {"category", "n_items"}}
    for it in data.eval() + data.labelled():
        assert set(it) == fields[it["family"]]
        cons = [constraint_from_dict(c) for c in it["constraints"]]
        assert 1 <= len(cons) <= 3
        assert it["instruction"] == " ".join([it["request"], *(c.describe() for c in cons)])
        assert it["subject"] in it["request"]
        if it["family"] == "list":
            assert not {c.kind for c in cons} & {"bullets", "numbered"}


def test_every_fourth_item_is_a_list_item():
    data = IFEvalSynth(n_labelled=160, n_unlabelled=(48, 48), n_eval=200)
    for split in (data.eval(), data.labelled(), data.unlabelled(1) + data.unlabelled(2)):
        fams = [it["family"] for it in split]
        assert fams[3::4] == ["list"] * len(fams[3::4])
        assert fams.count("list") == len(split) // 4


def _splits(data):
    return {
        "labelled": data.labelled(),
        **{f"unlabelled{i}": data.unlabelled(i) for i in range(1, data.n_iterations + 1)},
        "eval": data.eval(),
    }


def test_splits_sizes_and_determinism():
    a, b = _splits(IFEvalSynth(seed=3)), _splits(IFEvalSynth(seed=3))
    assert a == b
    assert [len(v) for v in a.values()] == [512, 256, 256, 256, 200]


def test_splits_same_in_another_process():
    """No reliance on hash randomisation: a subprocess with another PYTHONHASHSEED builds the same items."""
    code = (
        "import json, hashlib; from methods.data.ifeval_synth import IFEvalSynth; d = IFEvalSynth(seed=1);"
        "rows = d.labelled() + d.unlabelled(1) + d.unlabelled(3) + d.eval();"
        "print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                             check=True)
        digests.add(out.stdout.strip())
    d = IFEvalSynth(seed=1)
    rows = d.labelled() + d.unlabelled(1) + d.unlabelled(3) + d.eval()
    digests.add(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())
    assert len(digests) == 1


@pytest.mark.parametrize("seed", [0, 7])
def test_splits_disjoint_and_eval_unseen(seed):
    splits = _splits(IFEvalSynth(seed=seed))
    all_items = [it for v in splits.values() for it in v]
    assert len({it["id"] for it in all_items}) == len(all_items)
    assert len({it["instruction"] for it in all_items}) == len(all_items)
    train = [it for name, v in splits.items() if name != "eval" for it in v]
    train_text = "\n".join(it["instruction"] for it in train)
    assert not {it["subject"] for it in splits["eval"]} & {it["subject"] for it in train}
    for it in splits["eval"]:
        assert it["request"] not in train_text


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 1 / 3, 0.5, 1.0])
def test_seed_items_prefix(fraction):
    data = IFEvalSynth(n_labelled=37, seed_fraction=fraction)
    seed, pool = data.seed_items(), data.labelled()
    assert len(seed) == math.ceil(fraction * 37) >= 1
    assert seed == pool[: len(seed)]
    if fraction == 1.0:
        assert seed == pool


def test_growing_one_split_keeps_the_others():
    small = IFEvalSynth(n_labelled=64, n_unlabelled=(32, 32), n_eval=20)
    big = IFEvalSynth(n_labelled=128, n_unlabelled=(32, 48, 16), n_eval=60)
    assert big.eval()[:20] == small.eval()
    assert big.labelled()[:64] == small.labelled()
    assert big.unlabelled(1) == small.unlabelled(1)
    assert big.unlabelled(2)[:32] == small.unlabelled(2)
    assert IFEvalSynth(n_labelled=16, n_unlabelled=[4]).eval() == IFEvalSynth().eval()


def test_other_seed_gives_other_splits():
    a, b = _splits(IFEvalSynth(seed=0)), _splits(IFEvalSynth(seed=1))
    for name in a:
        assert [it["instruction"] for it in a[name]] != [it["instruction"] for it in b[name]]
    assert {it["subject"] for it in a["eval"]} != {it["subject"] for it in b["eval"]}


def test_returned_items_are_copies():
    data = IFEvalSynth(n_eval=5)
    data.eval()[0]["constraints"].clear()
    assert data.eval()[0]["constraints"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seed_fraction": 0}, "seed_fraction"),
        ({"seed_fraction": 1.5}, "seed_fraction"),
        ({"n_labelled": 0}, "n_labelled"),
        ({"n_labelled": -4}, "n_labelled"),
        ({"n_unlabelled": (8, -1)}, "n_unlabelled"),
        ({"n_eval": 0}, "n_eval"),
        ({"n_eval": 100_000}, "n_eval"),
        ({"n_labelled": 3000}, "n_labelled"),
        ({"n_unlabelled": (1000, 1000)}, "n_unlabelled"),
        ({"n_constraints": (0, 2)}, "n_constraints"),
        ({"n_constraints": (3, 2)}, "n_constraints"),
        ({"n_constraints": (1, 9)}, "n_constraints"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_validate_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IFEvalSynth(**kwargs)


def test_unlabelled_index_is_one_based():
    data = IFEvalSynth(n_unlabelled=(4, 4))
    assert len(data.unlabelled(2)) == 4
    for bad in (0, 3):
        with pytest.raises(ValueError, match="unlabelled"):
            data.unlabelled(bad)


def test_built_from_the_hydra_config():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    # as experiments.pipeline does: resolve `${seed}` against the root, drop the suite's own keys
    root = OmegaConf.create({"seed": 0, "data": OmegaConf.load(REPO / "conf" / "data" / "ifeval_synth.yaml")})
    d = OmegaConf.to_container(root.data, resolve=True)
    suite_keys = ("name", "labeller", "label_sampling")
    data = instantiate(OmegaConf.create({k: v for k, v in d.items() if k not in suite_keys}))
    assert isinstance(data, IFEvalSynth) and len(data.unlabelled(3)) == 256
    assert isinstance(instantiate(OmegaConf.load(REPO / "conf" / "judge" / "gold.yaml")), GoldJudge)


# ---- gold judge (its v2 spec is tests/test_gold_v2.py) -----------------------------------------
ITEM = {
    "id": "hand-1",
    "family": "everyday",
    "subject": "greeting a new neighbour",
    "keywords": ["hello", "welcome"],
    "instruction": "Say hello to a new neighbour. Write in lowercase. Do not use any commas in your answer.",
    "constraints": [C.Lowercase().to_dict(), C.NoCommas().to_dict()],
}
HI = "hello there and welcome to the street where we have lived for years"


def test_gold_score_and_details():
    judge = GoldJudge()
    outs = [HI, HI.replace("there", "there,"), "Hello, " + HI, ""]
    assert judge.score([ITEM] * 4, outs) == [1.0, pytest.approx(0.7), pytest.approx(0.4), 0.0]
    assert judge.details(ITEM, outs[1])["constraints"] == {"lowercase": True, "no_commas": False}
    assert judge.name == "gold"


def test_gold_compare():
    judge = GoldJudge()
    # scores: (1.0 vs 0.4), (0.4 vs 1.0), (0.7 vs 0.7), and 0.7 vs 0.7 from different failures
    comma, caps = HI.replace("there", "there,"), "Hello there and welcome to the street where we lived"
    firsts = [HI, "Hello, " + HI, comma, comma]
    seconds = ["Hello, " + HI, HI, comma.replace("street", "road"), caps]
    assert judge.compare([ITEM] * 4, firsts, seconds) == [1.0, 2.0, 1.5, 1.5]


def test_gold_refuses_items_without_constraints():
    with pytest.raises(ValueError, match=r"'alpaca-3'.*ifeval_synth"):
        GoldJudge().score([{"id": "alpaca-3", "instruction": "Hi"}], ["Hello"])
    with pytest.raises(ValueError, match="items"):
        GoldJudge().score([ITEM, ITEM], ["a"])
