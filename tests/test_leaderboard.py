"""The variants table: one row per variant, with iterative methods' per-step rows before their final row."""
from __future__ import annotations

import pandas as pd

from experiments.pipeline import leaderboard


def test_iterations_expand_into_rows(tmp_path):
    results = {
        "sft": {"method": "sft", "win_rate": 50.0, "standard_error": 0.0, "n_total": 4},
        "spa": {
            "method": "spa", "win_rate": 62.5, "standard_error": 3.0, "n_total": 4,
            "iterations": [
                {"iteration": 0, "win_rate": 55.0, "self_label_accuracy": None},
                {"iteration": 1, "win_rate": 60.0, "self_label_accuracy": 0.75},
            ],
        },
    }
    df = leaderboard(results, tmp_path / "leaderboard.csv")
    back = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(back["variant"]) == ["sft", "spa", "spa", "spa"]
    assert list(back["iteration"].astype(str)) == ["final", "0", "1", "final"]
    assert list(back["win_rate"]) == [50.0, 55.0, 60.0, 62.5]
    assert back["self_label_accuracy"].iloc[2] == 0.75
    assert "noisy_share" not in df.columns  # nobody reported it: no empty column
