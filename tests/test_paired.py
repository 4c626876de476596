"""Paired statistics (methods.core.paired) against hand-computed values."""
from __future__ import annotations

import math

import pytest

from methods.core.paired import mean_se, paired, win_scores


def test_win_scores_map_preferences():
    rows = [{"instruction": "a", "preference": 2.0}, {"instruction": "b", "preference": 1.0},
            {"instruction": "c", "preference": 0}, {"instruction": "d", "preference": None},
            {"instruction": "e", "preference": 1.75}]
    assert win_scores(rows) == {"a": 1.0, "b": 0.0, "c": 0.5, "e": 0.75}


def test_paired_delta_sign_test_and_interval():
    a = {f"q{k}": 1.0 for k in range(10)}
    b = {f"q{k}": 0.0 if k < 8 else 1.0 for k in range(10)}
    p = paired(a, b, n_boot=500)
    assert p["delta"] == pytest.approx(80.0)
    assert (p["n_better"], p["n_worse"], p["n_prompts"]) == (8, 0, 10)
    assert p["p_sign"] == pytest.approx(2 * 0.5 ** 8)  # two-sided exact binomial, 8 of 8
    # d is 1 on 8 prompts, 0 on 2: every resampled mean lies in [0, 100]; the mean of means is ~80
    assert 0 <= p["ci_low"] < 80 < p["ci_high"] <= 100


def test_paired_identical_runs_and_disjoint_prompts():
    a = {"x": 0.5, "y": 1.0}
    p = paired(a, a)
    assert (p["delta"], p["ci_low"], p["ci_high"], p["p_sign"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="share no eval prompt"):
        paired({"x": 1.0}, {"y": 1.0})


def test_paired_bootstrap_is_deterministic_given_the_seed():
    a = {f"q{k}": (k % 3) / 2 for k in range(30)}
    b = {f"q{k}": 0.5 for k in range(30)}
    assert paired(a, b, seed=1) == paired(a, b, seed=1)


def test_mean_se():
    m, se = mean_se([50.0, 52.0, 57.0])
    assert m == pytest.approx(53.0)
    assert se == pytest.approx(math.sqrt(((3**2 + 1**2 + 4**2) / 2) / 3))
    assert math.isnan(mean_se([1.0])[1])
