"""PIT (methods/pit): the five-term gap loss, the gap model's row layout, the curriculum's round datasets,
the inference loop and its stop rules on a scripted improver, and the whole method on the tiny model."""
from __future__ import annotations

import json
import math

import pytest
import torch

from tests.test_configs import compose


def _ls(x: float) -> float:
    return math.log(1 / (1 + math.exp(-x)))


# ---- the gap model --------------------------------------------------------------------------------


def test_five_term_loss_by_hand():
    """r^{wl} 2, r^{ww} 1, r^{ll} 0.5, r^{lw} 0: L = −[logσ(1) + logσ(1.5) + logσ(2) + logσ(1) + logσ(0.5)]
    = 0.3133 + 0.2014 + 0.1269 + 0.3133 + 0.4741 = 1.4290; a perfectly wrong order (all reversed) costs more."""
    from methods.pit.gap import five_term_loss

    t = torch.tensor
    loss = five_term_loss(t([2.0]), t([1.0]), t([0.5]), t([0.0]))
    want = -(_ls(1) + _ls(1.5) + _ls(2) + _ls(1) + _ls(0.5))
    assert loss.item() == pytest.approx(want, abs=1e-6) and want == pytest.approx(1.4290, abs=1e-4)
    assert five_term_loss(t([0.0]), t([1.0]), t([0.5]), t([2.0])).item() > loss.item()
    # r^{ww} = r^{ll}, both halfway: the two middle terms tie
    assert five_term_loss(t([1.0]), t([0.0]), t([0.0]), t([-1.0])).item() == pytest.approx(
        -(_ls(1) * 4 + _ls(2)), abs=1e-6)


def test_hook_reads_the_interleaved_rows():
    """A batch of rows (2k: ref y_l; 2k+1: ref y_w): chosen rewards [wl0, ww0, wl1, ww1], rejected
    [ll0, lw0, ll1, lw1] give the per-pair loss of each pair; an odd batch is refused."""
    from methods.core.trainers.reward import RewardBatch
    from methods.pit.gap import GapRewardTrainer, five_term_loss

    t = torch.tensor
    batch = RewardBatch(t([2.0, 1.0, 0.3, 0.1]), t([0.5, 0.0, -0.2, 0.4]), None, {})
    got = GapRewardTrainer.reward_loss(None, batch)
    want = torch.cat([five_term_loss(t([2.0]), t([1.0]), t([0.5]), t([0.0])),
                      five_term_loss(t([0.3]), t([0.1]), t([-0.2]), t([0.4]))])
    assert torch.allclose(got, want)
    with pytest.raises(RuntimeError, match="even batch"):
        GapRewardTrainer.reward_loss(None, RewardBatch(t([1.0, 2.0, 3.0]), t([0.0, 0.0, 0.0]), None, {}))


def test_paired_sampler_keeps_rows_together():
    from methods.pit.gap import PairedSampler

    s = PairedSampler(10, seed=3)
    order = list(s)
    assert sorted(order) == list(range(10))
    assert all(order[i] % 2 == 0 and order[i + 1] == order[i] + 1 for i in range(0, 10, 2))
    assert list(PairedSampler(10, seed=3)) == order  # a resumed run repeats the epoch
    s.set_epoch(1)
    assert list(s) != order
    with pytest.raises(ValueError, match="two rows a pair"):
        PairedSampler(7, seed=0)


def test_gap_rows_layout():
    from methods.pit.gap import gap_rows
    from methods.pit.prompts import load_prompts

    pr = load_prompts()
    rows = gap_rows([{"id": "a", "prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}], pr)
    assert [r["prompt"] for r in rows] == [pr.gap_context("Say hi.", "No."), pr.gap_context("Say hi.", "Hi!")]
    assert all(r["chosen"] == "Hi!" and r["rejected"] == "No." for r in rows)
    assert rows[0]["prompt"] == "Question: Say hi.\n\nReference answer: No.\n\nAnswer: "


def test_ordering_relations():
    from methods.pit.gap import ordering

    assert ordering(2, 1, 0.5, 0) == {"wl_over_ww": True, "ll_over_lw": True, "wl_over_lw": True, "full": True}
    o = ordering(1, 1.5, 0.2, 0)
    assert not o["wl_over_ww"] and o["ll_over_lw"] and o["wl_over_lw"] and not o["full"]


def test_prompt_files_are_checked(tmp_path, monkeypatch):
    from methods.pit import prompts

    (tmp_path / "bad.yaml").write_text("version: bad\nimprove: 'rewrite {instruction}'\n"
                                       "gap: '{instruction} {reference} {response}'\n")
    (tmp_path / "late.yaml").write_text("version: late\nimprove: '{instruction} {response}'\n"
                                        "gap: '{response} {instruction} {reference}'\n")
    monkeypatch.setattr(prompts, "DIR", tmp_path)
    with pytest.raises(ValueError, match="'improve' must be a text with"):
        prompts.load_prompts("bad")
    with pytest.raises(ValueError, match="must end with"):
        prompts.load_prompts("late")
    with pytest.raises(ValueError, match="known versions"):
        prompts.load_prompts("v9")


# ---- the curriculum's datasets ----------------------------------------------------------------------


def test_round_datasets():
    """Round 0: two rows a pair, y_ref = y_l then y_w; round 1: one row per M_P sample; the improver's
    turn carries the y_ref the reward item names."""
    from methods.pit.prompts import load_prompts
    from methods.pit.rl import round_rows

    pr = load_prompts()
    pairs = [{"id": "a", "prompt": "Q1", "chosen": "good", "rejected": "bad"},
             {"id": "b", "prompt": "Q2", "chosen": "fine", "rejected": "poor"}]
    r0 = round_rows(pairs, 0, pr)
    assert [(r["id"], r["item"]["y_ref"]) for r in r0] == [("a:l", "bad"), ("a:w", "good"), ("b:l", "poor"),
                                                           ("b:w", "fine")]
    assert all(r["prompt"] == pr.improve_turn(r["item"]["instruction"], r["item"]["y_ref"]) for r in r0)
    r1 = round_rows(pairs, 1, pr, {"a": ["mp-a0", "mp-a1"], "b": ["mp-b0"]})
    assert [(r["id"], r["item"]["y_ref"]) for r in r1] == [("a:p0", "mp-a0"), ("a:p1", "mp-a1"), ("b:p0", "mp-b0")]
    # one pass over the fields: an answer that holds "{response}" is not filled in again
    assert pr.improve_turn("Q {response}", "A {instruction}").count("{") == 2
    assert "mp-a1" in r1[1]["prompt"] and "Q1" in r1[1]["prompt"]


def test_sft_row_improves_the_loser():
    from methods.pit.method import sft_row
    from methods.pit.prompts import load_prompts

    pr = load_prompts()
    row = sft_row({"id": "a", "prompt": "Q", "chosen": "good", "rejected": "bad"}, pr)
    assert row["completion"] == "good" and row["prompt"] == pr.improve_turn("Q", "bad") and "bad" in row["prompt"]


# ---- the inference loop -----------------------------------------------------------------------------


def _c(text):
    from methods.core.generation import Completion

    return Completion(text, len(text.split()), True)


def test_iterate_without_a_stop_rule():
    """A scripted improver appends '+': round t of every prompt is y0 + t pluses; the improver sees the
    previous round's answer."""
    from methods.pit.inference import iterate

    seen = []

    def improve(xs, ys):
        seen.append(list(ys))
        return [_c(y + "+") for y in ys]

    rounds, stats = iterate(improve, ["x1", "x2"], [_c("a"), _c("b")], 3)
    assert [[a.text for a in r] for r in rounds] == [["a", "b"], ["a+", "b+"], ["a++", "b++"], ["a+++", "b+++"]]
    assert seen == [["a", "b"], ["a+", "b+"], ["a++", "b++"]]
    assert [s.n_rewritten for s in stats] == [0, 2, 2, 2]


def test_stop_rules_keep_the_last_accepted_answer():
    """unchanged: a prompt whose rewrite repeats it stops and is asked no more; an empty rewrite stops its
    prompt with the previous answer; gap: a rewrite the gap scorer rates no higher than the answer
    against itself is rejected (scripted gap: the longer text wins)."""
    from methods.pit.inference import gap_rule, iterate, unchanged_rule

    asked = []

    def improve(xs, ys):
        asked.append(list(xs))
        return [_c(y if x == "same" else "" if x == "empty" else y + " more") for x, y in zip(xs, ys)]

    rounds, stats = iterate(improve, ["same", "empty", "grow"], [_c("s"), _c("e"), _c("g")], 3, unchanged_rule)
    assert [a.text for a in rounds[-1]] == ["s", "e", "g more more more"]
    assert asked == [["same", "empty", "grow"], ["grow"], ["grow"]]
    assert (stats[1].n_rejected, stats[1].n_empty, stats[1].n_rewritten) == (1, 1, 1)
    assert rounds[1][0].stop == "rejected" and rounds[1][1].stop == "empty" and rounds[3][2].stop is None

    class LongerWins:
        def score(self, items, outputs):
            return [float(len(o)) for o in outputs]

    def shrink_second(xs, ys):
        return [_c(y + "!" if x == "up" else y[:-1]) for x, y in zip(xs, ys)]

    rounds, stats = iterate(shrink_second, ["up", "down"], [_c("ab"), _c("cd")], 2, gap_rule(LongerWins()))
    assert [a.text for a in rounds[2]] == ["ab!!", "cd"] and stats[1].n_rejected == 1


# ---- the method on the tiny model ---------------------------------------------------------------------

TINY = [
    "model=tiny_llama", "method=pit", "data.n_labelled=24", "data.n_eval=4",
    "data.label_sampling.n=4", "data.label_sampling.max_new_tokens=12", "data.label_sampling.drop_unfinished=false",
    "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge", "eval.max_new_tokens=8",
    "method.heldout_fraction=0.3", "method.n_rounds=2", "method.ablations=true", "method.sweep_temperatures=[1.0]",
    "trainers.improver.args.per_device_train_batch_size=4", "trainers.improver.args.max_length=1024",
    "trainers.improver.args.learning_rate=1e-3", "trainers.improver.args.disable_tqdm=true",
    "trainers.reward.args.per_device_train_batch_size=4", "trainers.reward.args.max_length=1024",
    "trainers.reward.args.learning_rate=1e-3", "trainers.reward.args.disable_tqdm=true",
    "trainers.rl.args.max_steps=1", "trainers.rl.args.rollout_prompts=4", "trainers.rl.args.mini_batch_size=4",
    "trainers.rl.args.max_new_tokens=8", "trainers.rl.args.save_steps=100", "trainers.rl.args.learning_rate=1e-3",
    "generation.progress=false",
]


@pytest.mark.usefixtures("one_thread")
def test_pit_on_the_tiny_model(tmp_path):
    """The whole method: improvement SFT, the gap model, PPO rounds 0 then 1 (and 1 alone), inference.
    Rows: round 0..2 of the final improver, then the ablations and the sweep at one round. The orderings
    are recomputed from the scores the stage wrote. The KL reference is M_PIT's SFT: PPO's first update
    has KL 0 exactly where it starts from the SFT improver (rl_0, rl_1), not where it starts from round 0's
    weights (rl_0_1)."""
    from experiments.pipeline import build_run, execute

    run = build_run(compose([*TINY, f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]))
    m = execute(run)
    root = tmp_path / "run"
    rows = m["iterations"]
    labels = [(r["improver"], r["iteration"]) for r in rows]
    assert labels == [("none", 0), ("final", 1), ("final", 2), ("sft", 1), ("round0", 1), ("round1_alone", 1),
                      ("t1", 1)]
    assert rows[0]["win_rate"] == pytest.approx(50.0)  # y0 is the baseline's answer
    assert m["curriculum"] == "0+1" and m["n_rounds"] == 2 and m["n_train_pairs"] + m["n_heldout_pairs"] == m["n_pairs"]
    held = json.loads((root / "gap_heldout" / "orderings.json").read_text())
    assert len(held) == m["n_heldout_pairs"]
    assert m["gap_full"] == pytest.approx(sum(r["wl"] > max(r["ww"], r["ll"]) and min(r["ww"], r["ll"]) > r["lw"]
                                              for r in held) / len(held))
    assert m["rl_0_first_kl"] == pytest.approx(0.0, abs=1e-6) and m["rl_1_first_kl"] == pytest.approx(0.0, abs=1e-6)
    assert abs(m["rl_0_1_first_kl"]) > 1e-6
    infer = [json.loads(x) for x in (root / "infer" / "rounds.jsonl").read_text().splitlines()]
    assert {r["round"] for r in infer} == {0, 1, 2} and len(infer) == 3 * 4
    final = json.loads((root / "eval" / "model_outputs.json").read_text())
    last = {r["id"]: r["answer"] for r in infer if r["round"] == 2}
    assert [o["output"] for o in final] == [last[o["id"]] for o in final]
    for stage in ("improver_sft", "gap_train", "rl_0", "rl_0_1", "rl_1", "round1_refs", "infer_sft", "infer_t1"):
        assert (root / stage).is_dir(), stage


def test_bad_settings_are_refused_before_any_work(tmp_path):
    from experiments.pipeline import build_run

    for override, msg in (("method.curriculum=[1,1]", "distinct rounds"), ("method.stop=maybe", "method.stop"),
                          ("trainers.reward.args.per_device_train_batch_size=3", "even"),
                          ("method.n_rounds=0", "n_rounds"), ("method.curriculum=[1,0]", "in order"),
                          ("method.sweep_temperatures=[1,1.0]", "each temperature once"),
                          ("trainers.reward.template='Q: {prompt} A: {response}'", "leave it null")):
        with pytest.raises(Exception, match=msg):
            build_run(compose([*TINY, override, f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/c"]))
