"""SSO (methods/sso): the loss forms by hand and through the trainer hook, principles and prompts, the
drop rules, the principle file against the gold checker's vocabulary, and the method on the tiny model."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

from types import SimpleNamespace

import pytest
import torch

from tests.conftest import REPO
from tests.test_configs import compose

# ---- the losses -----------------------------------------------------------------------------------

# fixed log-probs (sums over the answer's tokens), policy / reference, per (context, answer)
LP = {("x+", "y+"): (-10.0, -12.0), ("x+", "y-"): (-14.0, -12.0), ("x-", "yo"): (-9.0, -10.0),
      ("x-", "y+"): (-13.0, -11.0), ("x-", "y-"): (-8.0, -9.0), ("x", "y+"): (-11.0, -11.5),
      ("x", "y-"): (-12.0, -11.0)}
N_TOK = {"y+": 4, "y-": 5, "yo": 3}
BETA, GAMMA = 0.5, 0.1


def _dpo(c, a, b):
    """By hand: −log σ(β·z), z = (π(a) − ref(a)) − (π(b) − ref(b))."""
    (pa, ra), (pb, rb) = LP[(c, a)], LP[(c, b)]
    z = BETA * ((pa - ra) - (pb - rb))
    return math.log(1 + math.exp(-z))


def test_loss_forms_by_hand():
    """DPO(x⁺; y⁺ ≻ y⁻): z = 0.5·(2 − (−2)) = 2, −log σ(2) = 0.126928; SFT(x⁺, y⁺) = 10/4 = 2.5, so
    L⁺ = 0.126928 + 0.25 = 0.376928. L⁻ (v2) = DPO(x⁻; y_o ≻ y⁺) + γ·9/3: z = 0.5·(1 − (−2)) = 1.5,
    0.201413 + 0.3 = 0.501413. Naive L⁻ = DPO(x⁻; y⁻ ≻ y⁺) + γ·8/5: z = 0.5·(1 + 2) = 1.5, 0.201413 + 0.16.
    v1: W = σ(−(0.66·(−11/4) + 0.34·(−12/5))) = σ(2.631) = 0.932830; DPO(x; y⁺ ≻ y⁻): z = 0.5·(0.5 + 1) = 0.75,
    0.386871; L = 0.386871 + W·0.1·(0.126928 + 0.201413) = 0.417500."""
    from methods.sso.loss import dpo, sft, weight_v1

    def d(c, a, b):
        return dpo(LP[(c, a)][0], LP[(c, b)][0], LP[(c, a)][1], LP[(c, b)][1], BETA)

    assert d("x+", "y+", "y-") == pytest.approx(0.126928, abs=1e-6) == pytest.approx(_dpo("x+", "y+", "y-"))
    l_plus = d("x+", "y+", "y-") + GAMMA * sft(-10.0, 4)
    l_minus = d("x-", "yo", "y+") + GAMMA * sft(-9.0, 3)
    naive = d("x-", "y-", "y+") + GAMMA * sft(-8.0, 5)
    assert (l_plus, l_minus, naive) == pytest.approx((0.376928, 0.501413, 0.361413), abs=1e-6)
    w = weight_v1(-11.0 / 4, -12.0 / 5, 0.66)
    assert w == pytest.approx(0.932830, abs=1e-6)
    v1 = d("x", "y+", "y-") + w * 0.1 * (d("x+", "y+", "y-") + d("x-", "yo", "y+"))
    assert v1 == pytest.approx(0.417500, abs=1e-6)
    assert dpo(0, 0, 0, 0, 1.0) == pytest.approx(math.log(2)) and dpo(0, -800, 0, 0, 1.0) == pytest.approx(0)


def _hook_total(form, w=None):
    """Σ over the query's rows of weight · GeneratorTrainer.pair_loss on the fixed log-probs."""
    from methods.core.trainers.dpo import PairBatch
    from methods.sso.loss import generator_rows, generator_trainer

    names = {"X": "x", "X+": "x+", "X-": "x-", "Y+": "y+", "Y-": "y-", "YO": "yo"}
    query = {"id": "q", "x": "X", "x_plus": "X+", "x_minus": "X-", "y_plus": "Y+", "y_minus": "Y-", "y_o": "YO"}
    rows = generator_rows(query, form, big_g=0.1, w=w)
    total = 0.0
    for r in rows:
        c, a, b = names[r["prompt"]], names[r["chosen"]], names[r["rejected"]]
        mask = torch.zeros(2, 8, dtype=torch.long)
        mask[0, : N_TOK[a]] = 1
        mask[1, : N_TOK[b]] = 1
        t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
        batch = PairBatch(t(LP[(c, a)][0]), t(LP[(c, b)][0]), t(LP[(c, a)][1]), t(LP[(c, b)][1]),
                          inputs={"completion_mask": mask}, outputs=None)
        trainer = object.__new__(generator_trainer(0.0 if form == "v1" else GAMMA))  # no model: the hook only
        trainer.beta, trainer.label_smoothing = BETA, 0.0
        total += r["weight"] * trainer.pair_loss(batch).item()
    return total, [r["term"] for r in rows]


def test_trainer_rows_and_hook_sum_to_each_form():
    """The rows `generator_rows` writes, each through the trainer's pair_loss (DPO + γ·SFT(chosen)) and
    weighted, add up to the per-query forms above: v2 = L⁺ + L⁻, naive, L⁺ alone, L⁻ alone, and v1 with
    γ = 0 and weights 1, W·G, W·G."""
    from methods.sso.loss import weight_v1

    assert _hook_total("v2") == (pytest.approx(0.376928 + 0.501413, abs=1e-6), ["plus", "minus"])
    assert _hook_total("naive") == (pytest.approx(0.376928 + 0.361413, abs=1e-6), ["plus", "naive_minus"])
    assert _hook_total("plus")[0] == pytest.approx(0.376928, abs=1e-6)
    assert _hook_total("minus")[0] == pytest.approx(0.501413, abs=1e-6)
    w = weight_v1(-11.0 / 4, -12.0 / 5, 0.66)
    assert _hook_total("v1", w) == (pytest.approx(0.417500, abs=1e-6), ["x", "plus", "minus"])
    from methods.sso.loss import generator_rows

    with pytest.raises(ValueError, match="needs each query's weight"):
        generator_rows({"id": "q", "x": "", "x_plus": "", "x_minus": "", "y_plus": "", "y_minus": "", "y_o": ""}, "v1")


def test_ipo_by_hand():
    """(h − 1/(2β))² with h the per-token mean log-ratio difference: chosen (−10 + 12)/4 = 0.5, rejected
    (−14 + 12)/5 = −0.4, h = 0.9; β = 0.5: (0.9 − 1)² = 0.01."""
    from methods.core.trainers.dpo import PairBatch
    from methods.sso.loss import IPOTrainer

    mask = torch.zeros(2, 8, dtype=torch.long)
    mask[0, :4], mask[1, :5] = 1, 1
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    batch = PairBatch(t(-10.0), t(-14.0), t(-12.0), t(-12.0), inputs={"completion_mask": mask}, outputs=None)
    stub = type("T", (), {"beta": 0.5})()
    assert IPOTrainer.pair_loss(stub, batch).item() == pytest.approx(0.01)


# ---- principles, prompts, drop rules ----------------------------------------------------------------


def test_system_prompt_assembly():
    from methods.sso.principles import steer

    assert steer("Name a fruit.", "Be accurate.") == [{"role": "system", "content": "Be accurate."},
                                                      {"role": "user", "content": "Name a fruit."}]
    chat = [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "and?"}]
    assert steer(chat, "Be warm.") == [{"role": "system", "content": "Be warm."}, *chat[1:]]
    assert steer("q", None) == "q"


def test_feature_draws():
    """Two of the seven features per query, distinct, in file order, p± the joined good/bad sentences;
    concision joins in about 20% of 2000 draws; the same seed draws the same."""
    from methods.sso.principles import Principles

    book = Principles.load()
    assert len(book.features) == 7 and book.version == 1
    rng = random.Random(0)
    draws = [book.draw(rng, 2) for _ in range(2000)]
    names = list(book.features)
    for good, bad, feats in draws[:50]:
        core = [f for f in feats if f != "concision"]
        assert len(core) == 2 and core == sorted(core, key=names.index)
        assert good == " ".join((book.features.get(f) or book.concision)["good"] for f in feats)
        assert bad == " ".join((book.features.get(f) or book.concision)["bad"] for f in feats)
    share = sum("concision" in f for _, _, f in draws) / len(draws)
    assert 0.17 < share < 0.23
    assert [book.draw(random.Random(5), 2) for _ in range(3)] == [book.draw(random.Random(5), 2) for _ in range(3)]


def test_drop_rules():
    """y⁺ = y⁻ dropped as "same"; y⁺ or y⁻ equal to y_o (whitespace aside) as "unsteered"; rows without
    y_o (the policy's pairs) are judged on y⁺ = y⁻ only."""
    from methods.sso.method import drop_rows

    rows = [{"y_plus": "a", "y_minus": "a ", "y_o": "c"}, {"y_plus": "a", "y_minus": "b", "y_o": " a"},
            {"y_plus": "a", "y_minus": "b", "y_o": "b"}, {"y_plus": "a", "y_minus": "b", "y_o": "c"},
            {"y_plus": "a", "y_minus": "b"}]
    kept, reasons = drop_rows(rows)
    assert kept == rows[3:] and reasons == {"same": 1, "unsteered": 2}


def test_written_principles_parse():
    from methods.sso.principles import Writer, parse_written

    assert parse_written("GOOD: Be exact.\nBAD: Be sloppy.") == ("Be exact.", "Be sloppy.")
    assert parse_written("good : Be exact.\n\nbad: Be sloppy.\nGOOD: again") == ("Be exact.", "Be sloppy.")
    assert parse_written("GOOD: only one") is None and parse_written("GOOD: x\nBAD: x") is None
    chat = Writer.load().chat("Plan a picnic.")
    assert chat[0]["role"] == "system" and len(chat) == 1 + 2 * 3 + 1 and "Plan a picnic." in chat[-1]["content"]


def test_principles_never_name_the_gold_checks():
    """No principle (nor the writer's prompt and examples) names a constraint kind of data=ifeval_synth's
    gold checker, or one of its fixed start words / end phrases: the gold judge must not leak into
    training. Every kind the checker has is in the vocabulary (a new kind fails here until added)."""
    from methods.data.ifeval_synth.constraints import CONSTRAINTS
    from methods.sso.guard import CONSTRAINT_VOCABULARY, leaks
    from methods.sso.principles import Principles, Writer

    assert set(CONSTRAINTS) == set(CONSTRAINT_VOCABULARY)
    for text in Principles.load().texts() + Writer.load().texts():
        assert leaks(text) == [], text
    # the guard itself: what a model might write from a request with constraint sentences
    assert leaks("Use exactly three bullet points.") == ["bullets"]
    assert leaks("Answer in fewer than 50 words, all in lowercase.") == ["lowercase", "max_words", "min_words"]
    assert leaks("Finish with Hope this helps!") == ["end phrase 'Hope this helps!'"]
    assert leaks("Sure is a good opener.") == ["start word 'Sure'"] and leaks("Be kind and exact.") == []


class _Lp:
    def __init__(self, mean):
        self.mean = mean


def test_v1_weights_and_the_ordering_filter(monkeypatch):
    """v1's W per query comes from the SFT model's per-token mean log-likelihoods of y⁺ and y⁻ given the
    plain x (stubbed: −1 and −3 for query a, −2 and −2 for b), into the x⁺ and x⁻ rows as W·G. The
    ordering filter keeps a row when y⁺ is likelier under x⁺ than x⁻ and y⁻ under x⁻ than x⁺."""
    from methods.sso import method as sso_method
    from methods.sso.loss import weight_v1

    rows = [{"id": q, "x": f"x{q}", "x_plus": f"x+{q}", "x_minus": f"x-{q}", "y_plus": f"y+{q}",
             "y_minus": f"y-{q}", "y_o": f"yo{q}"} for q in "ab"]
    table = {("xa", "y+a"): -1.0, ("xa", "y-a"): -3.0, ("xb", "y+b"): -2.0, ("xb", "y-b"): -2.0,
             ("x+a", "y+a"): -1.0, ("x-a", "y+a"): -2.0, ("x-a", "y-a"): -1.0, ("x+a", "y-a"): -2.0,
             ("x+b", "y+b"): -1.0, ("x-b", "y+b"): -2.0, ("x-b", "y-b"): -3.0, ("x+b", "y-b"): -1.0}
    seen = []

    def fake(self, run, model, prompts, responses, spec=None):
        seen.append(model)
        return _Lp([table[(p, r)] for p, r in zip(prompts, responses)])

    monkeypatch.setattr(sso_method.SSO, "_logprobs", fake)
    monkeypatch.setattr(sso_method, "_rows", lambda path: rows)
    sso = sso_method.SSO(generator_loss="v1", v1_alpha=0.66, v1_g=0.1)
    run = SimpleNamespace(base_model_path="sft")
    out = sso._generator_rows(run, Path("unused"))
    assert [r["term"] for r in out] == ["x", "plus", "minus"] * 2 and seen == ["sft"]
    wa, wb = weight_v1(-1.0, -3.0, 0.66), weight_v1(-2.0, -2.0, 0.66)
    assert [r["weight"] for r in out] == pytest.approx([1.0, 0.1 * wa, 0.1 * wa, 1.0, 0.1 * wb, 0.1 * wb])
    assert sso._ordered(run, rows, "gen") == [True, False]  # b: y⁻ is likelier under x⁺ (−1) than x⁻ (−3)


def test_written_principles_with_fallbacks():
    """principles=written: the writer model's reply becomes p⁺ / p⁻ when it parses and names no gold check;
    an unparsed reply, or one naming a constraint kind, keeps the drawn features (and says so)."""
    from methods.sso.method import SSO

    replies = ["GOOD: Be exact and kind.\nBAD: Be sloppy and rude.", "no format at all",
               "GOOD: Use three bullet points.\nBAD: Ramble."]
    asked = {}

    class Engine:
        def generate(self, prompts, params):
            asked["n"], asked["system"] = len(prompts), prompts[0][0]["content"]
            return [[SimpleNamespace(text=t)] for t in replies]

    def engine(path):
        asked["model"] = path
        return Engine()

    run = SimpleNamespace(data_seed=0, base_model_path="sft", engine=engine)
    items = [{"id": f"q{k}", "instruction": f"request {k}"} for k in range(3)]
    out = SSO(principles="written")._principles(run, items, "gen_samples")
    assert asked["model"] == "sft" and asked["n"] == 3 and asked["system"].startswith("You write guidance")
    assert [o["source"] for o in out] == ["written", "features (unparsed)", "features (leak)"]
    assert (out[0]["p_plus"], out[0]["p_minus"]) == ("Be exact and kind.", "Be sloppy and rude.")
    assert out[1]["features"] and out[2]["p_plus"] != "Use three bullet points."


def test_principle_file_is_checked(tmp_path):
    from methods.sso.principles import Principles

    bad = tmp_path / "p.yaml"
    bad.write_text("features:\n  safety: {good: 'Be safe.', bad: ''}\nconcision: {probability: 0.2, good: a, bad: b}\n")
    with pytest.raises(ValueError, match="feature 'safety' needs non-empty"):
        Principles.load(bad)
    assert (REPO / "methods" / "sso" / "principles.yaml").exists()


# ---- the method on the tiny model -------------------------------------------------------------------

TINY = [
    "model=tiny_llama", "method=sso", "data.n_labelled=8", "data.seed_fraction=0.5", "data.n_unlabelled=[6,4]",
    "data.n_eval=4", "data.label_sampling.n=2", "data.label_sampling.max_new_tokens=8",
    "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge", "eval.max_new_tokens=8",
    "method.max_new_tokens=12", "method.temperature=1.0", "method.top_p=1.0",
    "trainers.generator.args.per_device_train_batch_size=4", "trainers.generator.args.max_length=1024",
    "trainers.generator.args.disable_tqdm=true", "trainers.policy.args.per_device_train_batch_size=4",
    "trainers.policy.args.max_length=1024", "trainers.policy.args.disable_tqdm=true", "generation.progress=false",
]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("form", ["v2", "none"])
def test_sso_on_the_tiny_model(tmp_path, form):
    """v2: the generator trains on two rows per kept query of pool 1 (L⁺: x⁺, y⁺ over y⁻; L⁻: x⁻, y_o over
    y⁺), then samples the policy's pairs on pools 1 and 2 (10 queries); `none` (the principle baseline) has
    no generator stage and its policy pairs come from the SFT model. The stats count every row."""
    from experiments.pipeline import build_run, execute

    run = build_run(compose([*TINY, f"method.generator_loss={form}", f"run_dir={tmp_path}/run",
                             f"paths.cache={tmp_path}/cache"]))
    m = execute(run)
    root = tmp_path / "run"
    samples = [json.loads(x) for x in (root / "gen_samples" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(s["x_plus"][0]["role"] == "system" for s in samples)
    assert m["before_n_rows"] == 6 and m["before_n_kept"] + m["before_n_dropped_same"] + m["before_n_dropped_unsteered"] == 6
    assert m["after_n_rows"] == 10 == m["n_policy_queries"]
    if form == "v2":
        assert m["n_generator_rows"] == 2 * m["before_n_kept"] and (root / "gen_train" / "policy").is_dir()
    else:
        assert not (root / "gen_train").exists() and "n_generator_rows" not in m
    assert m["n_policy_pairs"] == m["after_n_kept"] and (root / "policy_train" / "policy").is_dir()
    # on-policy-ness under the SFT model, and (v2 only) under the generator that sampled the policy pairs
    assert ("after_logp_plus_sampler" in m) == (form == "v2") and "before_logp_plus_sampler" not in m
