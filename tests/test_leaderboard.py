"""The variants table: every reported key kept, iterations expanded, paired columns from annotation files."""
from __future__ import annotations

import pandas as pd
import pytest

from methods.core import leaderboard
from methods.core.io import atomic_write_json


def test_iterations_expand_into_rows_and_every_key_is_kept(tmp_path):
    results = {
        "sft": {"method": "sft", "win_rate": 50.0, "standard_error": 0.0, "n_total": 4},
        "spa": {
            "method": "spa", "win_rate": 62.5, "standard_error": 3.0, "n_total": 4, "my_new_metric": 7,
            "iterations": [
                {"iteration": 0, "win_rate": 55.0, "self_label_accuracy": None},
                {"iteration": 1, "win_rate": 60.0, "self_label_accuracy": 0.75, "per_iter_thing": "x"},
            ],
        },
    }
    df = leaderboard.write(results, tmp_path / "leaderboard.csv")
    back = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(back["variant"]) == ["sft", "spa", "spa", "spa"]
    assert list(back["iteration"].astype(str)) == ["final", "0", "1", "final"]
    assert list(back["win_rate"]) == [50.0, 55.0, 60.0, 62.5]
    assert back["self_label_accuracy"].iloc[2] == 0.75
    assert back["my_new_metric"].iloc[3] == 7 and back["per_iter_thing"].iloc[2] == "x"
    assert list(df.columns[:4]) == ["variant", "method", "iteration", "win_rate"]
    assert "noisy_share" not in df.columns  # nobody reported it: no empty column


def _ann(prefs):
    return [{"instruction": f"q{k}", "output_1": "a", "output_2": "b", "preference": p} for k, p in enumerate(prefs)]


def test_paired_columns_from_annotation_files(tmp_path):
    # dpo_seed: w = [.5, .5, .5, .5]; dpo_all: w = [1, 1, 0.5, 0]; per-prompt d vs sft = [.5, .5, 0, -.5]
    files = {"sft": [1.5] * 4, "dpo_seed": [1.5] * 4, "dpo_all": [2, 2, 1.5, 1]}
    results, dirs = {}, {}
    for name, prefs in files.items():
        atomic_write_json(tmp_path / name / "eval" / "annotations.json", _ann(prefs))
        results[name] = {"method": name, "win_rate": 100 * sum(p - 1 for p in prefs) / 4,
                         "annotations_file": "eval/annotations.json"}
        dirs[name] = tmp_path / name
    df = leaderboard.write(results, tmp_path / "lb.csv", dirs).set_index("variant")
    assert df.loc["dpo_all", "delta_vs_sft"] == pytest.approx(12.5)
    assert df.loc["dpo_all", "delta_vs_dpo_seed"] == pytest.approx(12.5)
    assert df.loc["sft", "delta_vs_sft"] == 0.0
    # 2 better, 1 worse: two-sided binomial p = P(X<=1 or X>=2 | n=3) = 1.0
    assert df.loc["dpo_all", "p_sign_vs_sft"] == pytest.approx(1.0)
    lo, hi = df.loc["dpo_all", "ci_low_vs_sft"], df.loc["dpo_all", "ci_high_vs_sft"]
    assert -50 <= lo < 12.5 < hi <= 50  # bootstrap means of 4 values drawn from {50, 50, 0, -50}
