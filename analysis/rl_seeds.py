"""PPO's reward over updates across training seeds: `python -m analysis.rl_seeds DIR ... [--window 5]`.

For each variant directory of a `method=rl` run with PPO (its `rl/updates.csv` and `metrics.json`; or a
copy of those files under results/, with `updates.csv` beside `metrics.json`): the
mean reward of the first and the last `window` updates, their difference, the first and last update's
KL, the largest KL, the least-squares slope of the reward on the update number, and the eval win rate
with its paired Δ vs the SFT baseline (methods.core.paired; against the baseline itself every win score
is ½). Then the mean ± SE over the runs of each column, and a "pooled" row:

- slope: one common slope with an intercept per run (fixed effects), Σ_r Σ_t (t − t̄_r)(y − ȳ_r) /
  Σ_r Σ_t (t − t̄_r)², its 95% interval from Student's t on n − runs − 1 degrees of freedom. The
  interval takes the updates' deviations from the line as independent (fresh rollouts every update;
  the policy's path still carries over), so `resid_lag1`, Σ e_t e_{t+1} / Σ e_t² over the runs'
  residuals, says how far that holds; the interval is for these runs, not for the seeds' spread (the
  mean ± se rows of `slope` give that);
- delta_vs_sft: each eval prompt's win score averaged over the runs, then the paired bootstrap and
  sign test against ½ (as analysis.compare pools seeds).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def _centred(xs):
    m = sum(xs) / len(xs)
    return [x - m for x in xs]


def trend(series: list[list[float]]) -> dict:
    """Common slope of y on the update index over runs with their own intercepts (see the docstring)."""
    from scipy.stats import t as student

    centred = [(_centred(list(range(len(ys)))), _centred(ys)) for ys in series]
    sxx = sum(a * a for ts, _ in centred for a in ts)
    slope = sum(a * b for ts, yc in centred for a, b in zip(ts, yc)) / sxx
    resid = [[b - slope * a for a, b in zip(ts, yc)] for ts, yc in centred]
    sse = sum(e * e for es in resid for e in es)
    dof = sum(map(len, resid)) - len(series) - 1
    half = student.ppf(0.975, dof) * (sse / dof / sxx) ** 0.5 if dof > 0 else float("nan")
    lag1 = sum(e * f for es in resid for e, f in zip(es, es[1:])) / sse if sse > 0 else float("nan")
    return {"slope": slope, "slope_ci_low": slope - half, "slope_ci_high": slope + half,
            "resid_lag1": lag1}


def _updates(d: Path) -> list[dict]:
    updates = d / "rl" / "updates.csv"
    with open(updates if updates.is_file() else d / "updates.csv", newline="") as f:
        return list(csv.DictReader(f))


def row(d: Path, window: int) -> dict:
    from methods.core.paired import paired, win_scores

    ups = _updates(d)
    score, kl = [float(u["score"]) for u in ups], [float(u["kl"]) for u in ups]
    m = json.loads((d / "metrics.json").read_text())
    w = win_scores(json.loads((d / "annotations.json").read_text()))
    p = paired(w, {k: 0.5 for k in w})
    first, last = sum(score[:window]) / window, sum(score[-window:]) / window
    return {"run": str(d), "seed": json.loads((d / "run.json").read_text()).get("seed"), "n_updates": len(ups),
            "reward_first": first, "reward_last": last, "reward_rise": last - first, "kl_first": kl[0],
            "kl_last": kl[-1], "kl_max": max(kl), "win_rate": m["win_rate"], "delta_vs_sft": p["delta"],
            "ci_low_vs_sft": p["ci_low"], "ci_high_vs_sft": p["ci_high"], "p_sign_vs_sft": p["p_sign"],
            "gold_score": m.get("judge_score"), "slope": trend([score])["slope"]}


def pooled(dirs: list[Path]) -> dict:
    from methods.core.paired import paired, pooled_scores, win_scores

    w = pooled_scores([win_scores(json.loads((d / "annotations.json").read_text())) for d in dirs])
    p = paired(w, {k: 0.5 for k in w})
    slope = trend([[float(u["score"]) for u in _updates(d)] for d in dirs])
    return {"run": "pooled", "delta_vs_sft": p["delta"], "ci_low_vs_sft": p["ci_low"],
            "ci_high_vs_sft": p["ci_high"], "p_sign_vs_sft": p["p_sign"], **slope}


def main(argv=None) -> None:
    import pandas as pd

    from methods.core.paired import mean_se

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    df = pd.DataFrame([row(d, a.window) for d in a.dirs])
    num = [c for c in df.columns if c not in ("run", "seed", "p_sign_vs_sft")]  # no mean of p-values
    stats = [mean_se(df[c].tolist()) for c in num]
    df = pd.concat([df, pd.DataFrame([{"run": "mean", **{c: m for c, (m, _) in zip(num, stats)}},
                                      {"run": "se", **{c: s for c, (_, s) in zip(num, stats)}},
                                      pooled(a.dirs)])])
    print(df.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
