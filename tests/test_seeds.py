"""analysis.seeds: mean ± SE over seeds, refusing tables that are not seeds of one setting."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.seeds import seeds_table


def _run(d, seed, win_rates, model="m"):
    (d / "sft").mkdir(parents=True)
    (d / "sft" / "run.json").write_text("{}")
    (d / "sft" / "config.yaml").write_text(f"seed: {seed}\nmodel: {{name: {model}}}\ntrainer: {{args: {{seed: {seed}}}}}\n")
    pd.DataFrame({"variant": ["sft", "dpo_all"], "iteration": ["final", "final"], "win_rate": win_rates,
                  "judge_score": [0.4, 0.5]}).to_csv(d / "leaderboard.csv", index=False)
    return d


def test_mean_and_se_over_seeds(tmp_path):
    dirs = [_run(tmp_path / f"s{s}", s, [50.0, w]) for s, w in ((0, 54.0), (1, 58.0), (2, 62.0))]
    df = seeds_table(dirs).set_index("variant")
    assert df.loc["dpo_all", "win_rate"] == pytest.approx(58.0)
    assert df.loc["dpo_all", "win_rate_se"] == pytest.approx(4.0 / math.sqrt(3))  # std 4, 3 seeds
    assert df.loc["sft", "win_rate_se"] == 0.0 and df.loc["dpo_all", "n_seeds"] == 3


def test_refuses_runs_of_another_setting(tmp_path):
    a = _run(tmp_path / "a", 0, [50.0, 55.0])
    b = _run(tmp_path / "b", 1, [50.0, 57.0], model="other")
    with pytest.raises(ValueError, match="model.name"):
        seeds_table([a, b])
