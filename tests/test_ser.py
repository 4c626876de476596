"""SER (methods/ser): the learning-status rule, the hinge loss, the loop on a scripted reward model, and
the whole method on the tiny model through the app."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.test_configs import compose

# ---- the rule -------------------------------------------------------------------------------------


def test_learning_status_by_hand():
    """τ_high 0.55, τ_low 0.45, τ_Δ 0.3: (0.6, 0.4) is easy either way round; (0.9, 0.6) is not easy (both
    above τ_low) but |Δ| = 0.3 ≥ τ_Δ: hard; (0.56, 0.46) neither; (0.8, 0.5) |Δ| 0.3: hard, (0.7, 0.5) none."""
    from methods.ser.selection import EASY, HARD, Thresholds, status

    th = Thresholds()
    assert status(0.6, 0.4, th) == status(0.4, 0.6, th) == EASY
    assert status(0.9, 0.6, th) == HARD and status(0.8, 0.5, th) == HARD
    assert status(0.56, 0.46, th) is None and status(0.7, 0.5, th) is None
    with pytest.raises(ValueError, match="tau_low"):
        Thresholds(high=0.4, low=0.6).check()


def test_switch_takes_easy_then_hard_and_stops():
    """switch: the easy pairs while >= min_pairs qualify, else the hard ones while >= min_pairs of those do,
    else stop; released: easy ∪ hard in one pass."""
    from methods.ser.selection import EASY, HARD, choose

    st = [EASY, EASY, HARD, None, HARD, HARD]
    assert choose(st, 2, "switch") == (EASY, {0, 1})
    assert choose(st, 3, "switch") == (HARD, {2, 4, 5})
    assert choose(st, 4, "switch") == (None, set())
    assert choose(st, 5, "released") == ("easy+hard", {0, 1, 2, 4, 5})
    assert choose(st, 6, "released") == (None, set())
    assert choose([], 1, "switch") == (None, set())


def test_min_pairs_count_or_share():
    from methods.ser.selection import resolve_min_pairs

    assert resolve_min_pairs(600, 50) == 600 and resolve_min_pairs(0.1, 81) == 9 and resolve_min_pairs(0.001, 5) == 1


def test_hinge_loss_by_hand():
    """max(0, Δ − (r_w − r_l)) with Δ = 0.5: gaps 1.0, 0.2, −1.0 give 0, 0.3, 1.5."""
    from methods.core.trainers.reward import RewardBatch
    from methods.ser.loss import hinge_trainer

    cls = hinge_trainer(0.5)
    batch = RewardBatch(torch.tensor([2.0, 0.7, -1.0]), torch.tensor([1.0, 0.5, 0.0]), None, {})
    assert cls.reward_loss(SimpleNamespace(margin=cls.margin), batch).tolist() == pytest.approx([0.0, 0.3, 1.5])


# ---- the loop, on a scripted reward model -----------------------------------------------------------


def _pairs(n):
    return [{"id": f"q{k}", "prompt": f"question {k}", "chosen": f"good {k}", "rejected": f"bad {k}"} for k in range(n)]


class FakeRun:
    def __init__(self, root: Path, n_pairs: int, n_seed: int):
        self.dir, self.cfg, self.data_seed, self.base_model_path = root, SimpleNamespace(seed=0), 0, "sft"
        pairs = _pairs(n_pairs)
        self.data = SimpleNamespace(labelled=lambda: [{"id": p["id"]} for p in pairs],
                                    seed_items=lambda: [{"id": p["id"]} for p in pairs[:n_seed]])
        self.pairs = pairs

    def stage(self, name, fn, all_ranks=False):
        d = self.dir / name
        if not (d / "_done").exists():
            d.mkdir(parents=True, exist_ok=True)
            fn(d)
            (d / "_done").write_text("")
        return d

    def release(self):
        pass


def _scripted(monkeypatch, run, logits):
    """RM_k scores: `logits(k, answer_text)`; training records its rows."""
    from methods.core import pairs as pairs_mod
    from methods.ser.method import SER

    monkeypatch.setattr(pairs_mod, "labelled_pairs", lambda r, items: [dict(p) for p in run.pairs])
    trained = []

    def train(self, run_, rows, stage, init):
        trained.append((stage, [r["id"] for r in rows], init, rows))
        return f"rm{len(trained) - 1}"

    def scores(self, run_, rm, stage, heldout, pool):
        k = int(rm[2:]) if rm[2:].isdigit() else -1
        return {"heldout": {p["id"]: [logits(k, p["chosen"]), logits(k, p["rejected"])] for p in heldout},
                "pool": {p["id"]: [logits(k, a) for a in p["answers"]] for p in pool}}

    monkeypatch.setattr(SER, "_train_rm", train)
    monkeypatch.setattr(SER, "_scores", scores)
    return trained


def _ser(**kw):
    from methods.ser.method import SER

    return SER(**{"heldout_fraction": 0.2, "min_pairs": 3, "max_loops": 3, "policy": "none", **kw})


def _word_j(text):
    word, j = text.split()
    return word, int(j)


def test_loop_selects_easy_then_hard_and_accumulates(monkeypatch, tmp_path):
    """20 pairs: 4 seed, round(0.2·16) = 3 held out, 13 in the pool. Scripted RMs, each different, so
    that a loop selecting with the wrong RM, or a row reporting the wrong RM, fails:
      RM_0: j < 10 at logits ±2 (p 0.88 / 0.12: easy), right except for j = 8, 9; j >= 10 tie (no status);
      RM_1: j < 10 "bad" 0.1 over "good" 0 (no status, wrong); j >= 10 1.5 vs 0 (p 0.82 / 0.5: hard, right);
      RM_2: everything 0.1 for "bad", 0 for "good".
    So loop 1 (by RM_0) takes the easy pool pairs j < 10, loop 2 (by RM_1) the hard ones, loop 3 finds none
    and stops. D_n grows as seed ∪ all selected; the selected pairs leave the pool; the self-label
    accuracy is the share whose chosen is the gold-better answer; row n's held-out accuracy is RM_n's."""
    run = FakeRun(tmp_path, 20, 4)

    def logits(k, text):
        word, j = _word_j(text)
        if k == 0:
            return (2.0 if (word == "good") == (j not in (8, 9)) else -2.0) if j < 10 else 0.0
        if k == 1 and j >= 10:
            return 1.5 if word == "good" else 0.0
        return 0.0 if word == "good" else 0.1

    trained = _scripted(monkeypatch, run, logits)
    result = _ser()(run)
    rows = [it.stats for it in result.iterations]
    pool = [json.loads(x) for x in (tmp_path / "ser_data" / "pool.jsonl").read_text().splitlines()]
    seed_ids = {"q0", "q1", "q2", "q3"}
    held = {json.loads(x)["id"] for x in (tmp_path / "ser_data" / "heldout.jsonl").read_text().splitlines()}
    assert len(held) == 3 and len(pool) == 13 and not held & seed_ids
    for p in pool:  # answers shuffled, the gold score marks the good one
        assert p["answers"][p["gold_scores"].index(1)].startswith("good")
    pool_ids = {p["id"] for p in pool}
    easy = {i for i in pool_ids if int(i[1:]) < 10}
    hard = pool_ids - easy
    assert rows[0]["status"] == "seed" and rows[0]["n_train_pairs"] == 4
    assert rows[1]["status"] == "easy" and rows[1]["n_selected"] == len(easy)
    wrong = len({"q8", "q9"} & easy)
    assert rows[1]["self_label_accuracy"] == pytest.approx(1 - wrong / len(easy))
    assert rows[2]["status"] == "hard" and rows[2]["n_selected"] == len(hard) and rows[2]["self_label_accuracy"] == 1
    assert len(rows) == 3 and result.metrics["stop"] == "fewer than 3 pairs qualify"
    # held-out accuracy of row k is RM_k's: RM_0 right on j < 10 but 8, 9, a tie (½) on j >= 10; RM_1 right on
    # j >= 10 only; RM_2 wrong everywhere
    js = [int(i[1:]) for i in held]
    assert rows[0]["heldout_accuracy"] == pytest.approx(sum(1.0 if j < 8 else 0.0 if j < 10 else 0.5 for j in js) / 3)
    assert rows[1]["heldout_accuracy"] == pytest.approx(sum(j >= 10 for j in js) / 3)
    assert rows[2]["heldout_accuracy"] == 0.0 and result.metrics["final_rm_accuracy"] == 0.0
    # D_1 = seed ∪ easy, D_2 = D_1 ∪ hard; every RM from the SFT model; the chosen one is the higher-scored
    assert [t[0] for t in trained] == ["rm0_train", "rm1_train", "rm2_train", "rm_all_train"]
    assert set(trained[1][1]) == seed_ids | easy and set(trained[2][1]) == seed_ids | easy | hard
    assert all(t[2] is None for t in trained)
    for r in trained[1][3]:
        assert r["chosen"].startswith("good" if _word_j(r["id"].replace("q", "x "))[1] not in (8, 9) else "bad")
    # the all-labels RM: seed ∪ every pool pair with its true label
    assert set(trained[3][1]) == seed_ids | pool_ids
    assert all(r["chosen"].startswith("good") for r in trained[3][3])
    assert result.metrics["n_self_labelled"] == len(pool)


def test_shuffled_seed_flips_labels_and_previous_continues(monkeypatch, tmp_path):
    """The control flips each seed label with probability ½ (data seed 0: a fixed subset, counted); the
    all-labels RM still gets the true seed labels; retrain_from=previous starts RM_n from RM_{n−1}."""
    run = FakeRun(tmp_path, 40, 20)
    trained = _scripted(monkeypatch, run, lambda k, t: 3.0 if t.startswith("good") else -3.0)
    result = _ser(shuffle_seed_labels=True, retrain_from="previous", max_loops=1)(run)
    seed_rows = trained[0][3]
    flipped = sum(r["chosen"].startswith("bad") for r in seed_rows)
    assert 0 < flipped < 20 and result.metrics["n_seed_flipped"] == flipped
    assert trained[1][2] == "rm0" and len(result.iterations) == 2
    assert trained[-1][0] == "rm_all_train" and all(r["chosen"].startswith("good") for r in trained[-1][3])


def test_dpo_policy_trains_on_rm_labels(monkeypatch, tmp_path):
    """policy=dpo: the seed pairs with their human labels plus every pool and held-out pair labelled by the
    final RM (ties dropped): the pairs dpo_all trains on; the metrics carry how many and their gold agreement."""
    run = FakeRun(tmp_path, 20, 4)
    _scripted(monkeypatch, run, lambda k, t: 1.0 if t.startswith("good") else 0.0)
    got = {}

    class Trainer:
        def train(self, run_, rows, stage):
            got["rows"], got["stage"] = rows, stage
            return "policy_dir"

    result = _ser(policy="dpo", policy_trainer=Trainer(), max_loops=0, reference_rm=False)(run)
    assert result.policy.weights == "policy_dir" and got["stage"] == "policy_train"
    assert len(got["rows"]) == result.metrics["n_policy_pairs"] == 4 + 13 + 3
    assert result.metrics["policy_pairs_self_label_accuracy"] == 1.0 and result.metrics["policy_pairs_n_gold_known"] == 16
    assert all(r["chosen"].startswith("good") for r in got["rows"])


def test_policy_samples_pool_with_k_answers(monkeypatch, tmp_path):
    """pairs=policy with K = 3: the pool rows hold the SFT model's 3 samples and their gold scores; the
    RM's highest and lowest scored answers form the pair, and it agrees with gold when the gold scores
    order those two alike (a gold tie between them: unknown)."""
    from methods.core import pairs as pairs_mod
    from methods.judges.base import Scorer
    from methods.ser.method import SER, self_label

    monkeypatch.setattr(pairs_mod, "sample", lambda run, items, params: [
        [{"text": f"{it['id']}-{k}"} for k in range(params.n)] for it in items])

    class Gold:
        name = "gold"

        def score(self, items, outputs):
            return [float(o[-1]) for o in outputs]  # sample k scores k

    assert isinstance(Gold(), Scorer)
    run = SimpleNamespace(cfg=SimpleNamespace(seed=0), gold=Gold(),
                          data=SimpleNamespace(unlabelled=lambda i: [{"id": "u0", "instruction": "q"}]))
    pool = SER(pairs="policy", n_policy_samples=3, max_new_tokens=8)._policy_pool(run)
    assert pool == [{"id": "u0", "prompt": "q", "answers": ["u0-0", "u0-1", "u0-2"], "gold_scores": [0.0, 1.0, 2.0]}]
    assert self_label(pool[0], [0.3, 0.1, 0.9]) == {"id": "u0", "prompt": "q", "chosen": "u0-2", "rejected": "u0-1",
                                                    "gold_agrees": True}
    assert self_label(pool[0], [0.9, 0.5, 0.1])["gold_agrees"] is False
    assert self_label({**pool[0], "gold_scores": [1.0, 0.0, 1.0]}, [0.95, 0.5, 0.1])["gold_agrees"] is None


# ---- the method on the tiny model -----------------------------------------------------------------------

TINY = [
    "model=tiny_llama", "method=ser", "data.n_labelled=40", "data.seed_fraction=0.25", "data.n_eval=4",
    "data.label_sampling.n=4", "data.label_sampling.max_new_tokens=16", "data.label_sampling.drop_unfinished=false",
    "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge", "eval.max_new_tokens=8",
    "method.min_pairs=1", "method.max_loops=2", "method.heldout_fraction=0.5", "method.tau_delta=1e-6",
    "method.policy=dpo", "trainers.reward.args.per_device_train_batch_size=4", "trainers.reward.args.max_length=1024",
    "trainers.reward.args.learning_rate=1e-3", "trainers.reward.args.disable_tqdm=true",
    "trainers.policy.args.per_device_train_batch_size=4", "trainers.policy.args.max_length=1024",
    "trainers.policy.args.disable_tqdm=true", "generation.progress=false",
]


@pytest.mark.usefixtures("one_thread")
def test_ser_on_the_tiny_model(tmp_path):
    """The whole method: seed RM, loops, the all-labels
    RM, DPO on RM labels, evaluation (τ_Δ 1e-6: any pair the tiny RM tells apart is hard). Rows 0..n with the held-out accuracy of each RM; the files of every
    stage are there; the saved RMs load as one-label classifiers."""
    from experiments.pipeline import build_run, execute

    run = build_run(compose([*TINY, f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]))
    m = execute(run)
    rows = m["iterations"]
    assert rows[0]["status"] == "seed" and rows[0]["iteration"] == 0
    n = m["n_loops"]
    assert len(rows) == n + 1 and n >= 1
    root = tmp_path / "run"
    heldout = [json.loads(x) for x in (root / "ser_data" / "heldout.jsonl").read_text().splitlines()]
    for k, r in enumerate(rows):  # each row's accuracy is its RM's, recomputed from the scores it wrote
        s = json.loads((root / f"rm{k}_scores" / "scores.json").read_text())["heldout"]
        correct = [1.0 if s[p["id"]][0] > s[p["id"]][1] else 0.0 if s[p["id"]][0] < s[p["id"]][1] else 0.5
                   for p in heldout]
        assert r["heldout_accuracy"] == pytest.approx(sum(correct) / len(correct))
    assert rows[1]["n_train_pairs"] == rows[0]["n_train_pairs"] + rows[1]["n_selected"]
    assert m["n_seed_pairs"] + m["n_heldout_pairs"] + m["n_pool_pairs"] <= 40 and m["policy"] == "dpo"
    assert m["n_all_labels_pairs"] == m["n_seed_pairs"] + m["n_pool_pairs"]
    assert math.isfinite(m["final_vs_seed_delta"]) and math.isfinite(m["all_labels_rm_accuracy"])
    for stage in ["rm0_train", "rm0_scores", *(f"rm{k}_train" for k in range(1, n + 1)), "rm_all_train",
                  "policy_train", "eval"]:
        assert (root / stage).is_dir(), stage
    cfg = json.loads((root / "rm0_train" / "reward_model" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForSequenceClassification"]


def test_ppo_policy_gets_the_rm_reward(monkeypatch, tmp_path):
    """policy=ppo: the RL trainer gets the first n_rl_prompts labelled prompts and a scorer giving σ(RM)
    (logit 0 -> 0.5, 2 -> 0.881) or, with rl_reward=logit, the raw score; its log's first and last
    mean score and KL reach the metrics."""
    from methods.ser import method as ser_method

    run = FakeRun(tmp_path, 20, 4)
    run.data.labelled = lambda: [{"id": p["id"], "instruction": p["prompt"]} for p in run.pairs]
    _scripted(monkeypatch, run, lambda k, t: 1.0)
    got = {}

    class Judge:
        def score(self, items, outputs):
            return [0.0, 2.0][: len(outputs)]

    monkeypatch.setattr(ser_method.SER, "judge", lambda self, rm: Judge())

    class PPO:
        name = "ppo"

        def train(self, run_, rows, stage, scorer):
            got["rows"], got["scorer"] = rows, scorer
            d = tmp_path / stage / "policy"
            d.mkdir(parents=True, exist_ok=True)
            (d.parent / "train_metrics.json").write_text(json.dumps(
                {"log": [{"step": 1, "score": 0.4, "kl": 0.0}, {"step": 2, "score": 0.6, "kl": 1.5}]}))
            return str(d)

    monkeypatch.setattr(ser_method.SER, "_train_rm", lambda self, run_, rows, stage, init: "rm0")
    # labelled_pairs was scripted above; the PPO prompts come from run.data.labelled
    m = _ser(policy="ppo", rl_trainer=PPO(), n_rl_prompts=5, max_loops=0, reference_rm=False)(run).metrics
    assert [r["id"] for r in got["rows"]] == [f"q{k}" for k in range(5)]
    assert got["scorer"].score([{}, {}], ["a", "b"]) == pytest.approx([0.5, 0.8807970779778823])
    assert (m["first_rm_score"], m["last_rm_score"], m["last_kl"], m["n_rl_prompts"]) == (0.4, 0.6, 1.5, 5)
    ser_raw = _ser(policy="ppo", rl_trainer=PPO(), rl_reward="logit", max_loops=0, reference_rm=False)
    ser_raw._policy(run, "rm0", [], [], [], {"pool": {}, "heldout": {}}, {})
    assert got["scorer"].score([{}, {}], ["a", "b"]) == [0.0, 2.0]


@pytest.mark.usefixtures("one_thread")
def test_ser_with_ppo_on_the_tiny_model(tmp_path):
    """policy=ppo end to end on the tiny model: one loop at most, then 2 PPO updates of 4 prompts against
    σ(final RM) through the shared RL trainer; the rewards it logged are σ-scores (in (0, 1))."""
    from experiments.pipeline import build_run, execute

    over = [o for o in TINY if not o.startswith("method.policy=")]
    run = build_run(compose([*over, "method.policy=ppo", "method.max_loops=1", "method.reference_rm=false",
                             "method.n_rl_prompts=4", "trainers.rl.args.max_steps=2", "trainers.rl.args.rollout_prompts=4",
                             "trainers.rl.args.mini_batch_size=4", "trainers.rl.args.max_new_tokens=8",
                             "trainers.rl.args.save_steps=100", f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]))
    m = execute(run)
    assert m["policy"] == "ppo" and m["n_rl_prompts"] == 4 and m["rl_trainer"] == "ppo"
    assert 0 < m["first_rm_score"] < 1 and 0 < m["last_rm_score"] < 1
    log = json.loads((tmp_path / "run" / "policy_train" / "train_metrics.json").read_text())["log"]
    assert [e["step"] for e in log if "score" in e] == [1, 2]
