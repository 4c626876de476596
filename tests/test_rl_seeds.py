"""analysis.rl_seeds: first/last-window reward, KL and the paired Δ vs SFT, per run and over runs."""
from __future__ import annotations

import json

import pytest


def _run(d, seed, scores, kls, prefs):
    (d / "rl").mkdir(parents=True)
    lines = ["step,score,kl"] + [f"{k + 1},{s},{x}" for k, (s, x) in enumerate(zip(scores, kls))]
    (d / "rl" / "updates.csv").write_text("\n".join(lines) + "\n")
    (d / "run.json").write_text(json.dumps({"seed": seed}))
    (d / "metrics.json").write_text(json.dumps({"win_rate": 100 * sum(p - 1 for p in prefs) / len(prefs),
                                                "judge_score": 0.5}))
    (d / "annotations.json").write_text(json.dumps([{"instruction": f"q{k}", "preference": p}
                                                    for k, p in enumerate(prefs)]))


def test_windows_and_the_mean_over_seeds(tmp_path, capsys):
    from analysis.rl_seeds import main, row

    _run(tmp_path / "a", 0, [0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 3.0, 2.0], [2, 2, 1, 1.5])
    _run(tmp_path / "b", 1, [0.4, 0.4, 0.2, 0.2], [0.0, 0.5, 0.5, 0.5], [1, 1, 1, 2])
    r = row(tmp_path / "a", window=2)
    assert (r["reward_first"], r["reward_last"]) == pytest.approx((0.15, 0.35)) and r["kl_max"] == 3.0
    assert r["kl_last"] == 2.0 and r["delta_vs_sft"] == pytest.approx(100 * 2.5 / 4 - 50)
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--window", "2", "--out", str(tmp_path / "t.csv")])
    import pandas as pd

    t = pd.read_csv(tmp_path / "t.csv").set_index("run")
    assert t.loc["mean", "reward_rise"] == pytest.approx((0.2 + -0.2) / 2)
    assert t.loc["se", "reward_rise"] == pytest.approx(0.2)  # std(ddof 1) of [0.2, -0.2] / sqrt(2)


def test_a_collected_copy_reads_its_updates_beside_metrics(tmp_path):
    """results/ copies keep updates.csv beside metrics.json instead of under rl/."""
    from analysis.rl_seeds import row

    _run(tmp_path / "a", 0, [0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 3.0, 2.0], [2, 2, 1, 1.5])
    (tmp_path / "a" / "rl" / "updates.csv").rename(tmp_path / "a" / "updates.csv")
    assert row(tmp_path / "a", window=2)["reward_rise"] == pytest.approx(0.2)


def test_pooled_slope_and_pooled_delta_by_hand(tmp_path):
    """Run a: y = 0.1..0.4 over t = 0..3, Σ(t−t̄)(y−ȳ) = 0.5, Sxx = 5 (its own slope 0.1, no residual);
    run b: y = .4 .4 .2 .2, Σ(t−t̄)(y−ȳ) = −0.4 (slope −0.08). Common slope (0.5 − 0.4) / 10 = 0.01.
    Residuals about the common slope: Σ² = 0.0405 + 0.0485 = 0.089 on 8 − 2 − 1 = 5 dof, SE =
    √(0.089 / 5 / 10) = 0.04219, half-width t(0.975, 5) · SE = 2.5706 · 0.04219 = 0.10845.
    Residuals a (−.135, −.045, .045, .135), b (.115, .105, −.105, −.115): lag-1 products sum to
    .010125 + .013125 = .02325, over Σ² 0.089: 0.26124.
    Pooled win scores per prompt: a (1, 1, 0, .5) and b (0, 0, 0, 1) average to (.5, .5, 0, .75):
    Δ vs ½ = 100·0.4375 − 50 = −6.25."""
    from analysis.rl_seeds import pooled, row, trend

    _run(tmp_path / "a", 0, [0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 3.0, 2.0], [2, 2, 1, 1.5])
    _run(tmp_path / "b", 1, [0.4, 0.4, 0.2, 0.2], [0.0, 0.5, 0.5, 0.5], [1, 1, 1, 2])
    assert row(tmp_path / "a", window=2)["slope"] == pytest.approx(0.1)
    assert row(tmp_path / "b", window=2)["slope"] == pytest.approx(-0.08)
    t = trend([[0.1, 0.2, 0.3, 0.4], [0.4, 0.4, 0.2, 0.2]])
    assert (t["slope"], t["slope_ci_low"], t["slope_ci_high"]) == \
        pytest.approx((0.01, -0.09845, 0.11845), abs=2e-5)
    assert t["resid_lag1"] == pytest.approx(0.26124, abs=1e-5)
    exact = trend([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.0, 0.1, 0.2]])  # no residual: a zero-width interval
    assert (exact["slope_ci_low"], exact["slope_ci_high"]) == pytest.approx((0.1, 0.1))
    p = pooled([tmp_path / "a", tmp_path / "b"])
    assert p["delta_vs_sft"] == pytest.approx(-6.25) and p["slope"] == pytest.approx(0.01)
