"""analysis.compare: the head-to-head table pools seeds per prompt before the paired test, keeps the
budget columns, and draws the self-label accuracy of self-labelling methods only."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.compare import compare_table, label_efficiency_rows, main, self_label_rows

PROMPTS = [f"p{k}" for k in range(4)]


def _variant(root, name, method, seed, prefs, metrics=None, reference=False):
    d = root / ("references" if reference else "") / name
    d.mkdir(parents=True)
    (d / "annotations.json").write_text(json.dumps([{"instruction": p, "preference": x}
                                                    for p, x in zip(PROMPTS, prefs)]))
    if not reference:
        (d / "run.json").write_text(json.dumps({"seed": seed, "seed_fraction": 0.25}))
        (d / "config.yaml").write_text(f"seed: {seed}\nmodel: {{name: m}}\n")
        (d / "metrics.json").write_text(json.dumps({"method": method, **(metrics or {})}))


def _seed_run(root, seed, dpo_prefs):
    """sft (the baseline: ties), dpo_seed, spa with one labelled iteration, the empty reference."""
    _variant(root, "sft", "sft", seed, [1.5] * 4)
    _variant(root, "dpo_seed", "dpo", seed, dpo_prefs)
    _variant(root, "spa", "spa", seed, [2, 2, 2, 1],
             {"iterations": [{"iteration": 0}, {"iteration": 1, "self_label_accuracy": 0.5 + 0.1 * seed}]})
    _variant(root, "ref_empty", "reference", seed, [1, 1, 1, 1], reference=True)
    _variant(root, "ser", "ser", seed, [1.5] * 4, {
        "iterations": [{"iteration": 0}, {"iteration": 1, "self_label_accuracy": 0.75, "n_gold_known": 4}],
        "policy_pairs_self_label_accuracy": 0.6 + 0.1 * seed, "policy_pairs_n_gold_known": 5 + seed})
    _variant(root, "sso", "sso", seed, [1.5] * 4, {"before_principle_pair_accuracy": 0.4,
                                                   "after_principle_pair_accuracy": 0.6})
    win = {"sft": 50.0, "dpo_seed": 100 * (sum(dpo_prefs) / 4 - 1), "spa": 75.0, "ref_empty": 0.0, "sso": 50.0}
    pd.DataFrame({"variant": list(win), "method": ["sft", "dpo", "spa", "reference", "sso"],
                  "iteration": ["final"] * 5, "win_rate": list(win.values()), "judge_score": [0.4] * 5,
                  "avg_length": [10.0, 11.0, 12.0, 0.0, 9.0], "budget_labelled_pairs": [0, 6, 6, None, 0],
                  "budget_generated_tokens": [0, 100 + seed, 500, None, 50]}).to_csv(root / "leaderboard.csv",
                                                                                  index=False)
    return root


def test_pooled_paired_delta_and_budget_means(tmp_path):
    # dpo_seed's per-prompt win scores: seed 0 [1, 0, .5, .5], seed 1 [0, 1, .5, .5] -> mean .5 everywhere
    dirs = [_seed_run(tmp_path / "s0", 0, [2, 1, 1.5, 1.5]), _seed_run(tmp_path / "s1", 1, [1, 2, 1.5, 1.5])]
    t = compare_table(dirs).set_index("variant")
    assert t.loc["dpo_seed", "delta_vs_sft"] == pytest.approx(0.0)
    assert t.loc["dpo_seed", "p_sign_vs_sft"] == 1.0  # the seeds cancel per prompt: no prompt differs
    assert t.loc["spa", "delta_vs_dpo_seed"] == pytest.approx(25.0)  # (.75 - .5) per prompt
    assert t.loc["ref_empty", "delta_vs_sft"] == pytest.approx(-50.0)
    assert t.loc["dpo_seed", "budget_generated_tokens"] == pytest.approx(100.5)
    assert "delta_vs_sft" not in t.columns or pd.isna(t.loc["sft", "delta_vs_sft"])


def test_self_label_accuracy_rows_and_files(tmp_path):
    dirs = [_seed_run(tmp_path / "s0", 0, [2, 1, 1.5, 1.5]), _seed_run(tmp_path / "s1", 1, [1, 2, 1.5, 1.5])]
    rows = self_label_rows(dirs)
    spa = rows[rows["variant"] == "spa"]
    assert list(spa["accuracy"]) == pytest.approx([0.5, 0.6])  # iteration 1 of seeds 0 and 1
    sso = rows[(rows["variant"] == "sso") & (rows["seed"] == 0)]
    assert list(zip(sso["iteration"], sso["accuracy"])) == [(0, 0.4), (1, 0.6)]
    ser = rows[rows["variant"] == "ser (policy pairs)"]  # its own line, at the last loop
    assert list(zip(ser["iteration"], ser["accuracy"], ser["n_labels"])) == [(1, 0.6, 5), (1, 0.7, 6)]
    assert set(rows["variant"]) == {"spa", "sso", "ser", "ser (policy pairs)"}  # not sft, dpo_seed, references
    eff = label_efficiency_rows(dirs)
    assert "ref_empty" not in set(eff["variant"])
    out = tmp_path / "out"
    assert main([str(d) for d in dirs] + ["--out", str(out)]) == 0
    for name in ("compare.csv", "compare.md", "self_label_accuracy.png", "label_efficiency.png"):
        assert (out / name).is_file(), name
    acc = pd.read_csv(out / "self_label_accuracy.csv")
    spa_acc = acc[acc["variant"] == "spa"].iloc[0]
    assert spa_acc["accuracy"] == pytest.approx(0.55) and spa_acc["n_seeds"] == 2 and pd.isna(spa_acc["n_labels"])
    ser_acc = acc[acc["variant"] == "ser (policy pairs)"].iloc[0]
    assert ser_acc["accuracy"] == pytest.approx(0.65) and ser_acc["n_labels"] == 11  # summed over seeds


def test_label_efficiency_over_fractions(tmp_path):
    """One row per (variant, seed fraction): win rate and labelled pairs as mean ± SE over that fraction's
    seeds, the fraction read from each run's run.json."""
    dirs = [_seed_run(tmp_path / "s0", 0, [2, 1, 1.5, 1.5]), _seed_run(tmp_path / "s1", 1, [1, 2, 1.5, 1.5])]
    half = _seed_run(tmp_path / "f", 0, [2, 2, 2, 2])
    for f in half.glob("*/run.json"):
        f.write_text(json.dumps({"seed": 0, "seed_fraction": 0.5}))
    board = pd.read_csv(half / "leaderboard.csv")
    board.loc[board["variant"] == "dpo_seed", "budget_labelled_pairs"] = 12
    board.to_csv(half / "leaderboard.csv", index=False)
    out = tmp_path / "out"
    assert main([str(d) for d in dirs] + ["--fractions", str(half), "--out", str(out)]) == 0
    eff = pd.read_csv(out / "label_efficiency.csv").set_index(["variant", "seed_fraction"])
    assert eff.loc[("dpo_seed", 0.25), "win_rate"] == pytest.approx(50.0)  # seeds 0 and 1: 50 and 50
    assert eff.loc[("dpo_seed", 0.25), "n_seeds"] == 2 and eff.loc[("dpo_seed", 0.5), "n_seeds"] == 1
    assert eff.loc[("dpo_seed", 0.5), ["win_rate", "labelled_pairs"]].tolist() == [100.0, 12.0]
    assert ("ref_empty", 0.25) not in eff.index


def test_gpu_cost_dpo_flops_by_hand():
    from analysis import gpu_cost as g

    # one pair of two 1-token sequences: 8N trained (checkpointing) + 2N reference, per sequence
    assert g.dpo(1, length=1) == 2 * 10 * g.N
    assert g.dpo(1, length=1, extra_forwards=2) == 2 * 14 * g.N
    assert g.hours_compute(g.PEAK * g.MFU * 3600) == 1.0
    total = {r["row"]: r["a100_hours"] for r in g.rows()}
    assert total["pit"] > total["dpo_all"] > total["dpo_seed"]  # PPO's updates dominate, as the docs say
