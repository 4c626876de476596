"""PPO's reward over updates across training seeds: `python -m analysis.rl_seeds VARIANT_DIR ... [--window 5]`.

For each variant directory of a `method=rl` run with PPO (its `rl/updates.csv` and `metrics.json`; or a
copy of those files under results/, with `updates.csv` beside `metrics.json`): the
mean reward of the first and the last `window` updates, their difference, the first and last update's
KL, the largest KL, and the eval win rate with its paired Δ vs the SFT baseline (methods.core.paired;
against the baseline itself every win score is ½). Then the mean ± SE over the runs of each column.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def row(d: Path, window: int) -> dict:
    from methods.core.paired import paired, win_scores

    updates = d / "rl" / "updates.csv"
    with open(updates if updates.is_file() else d / "updates.csv", newline="") as f:
        ups = list(csv.DictReader(f))
    score, kl = [float(u["score"]) for u in ups], [float(u["kl"]) for u in ups]
    m = json.loads((d / "metrics.json").read_text())
    w = win_scores(json.loads((d / "annotations.json").read_text()))
    p = paired(w, {k: 0.5 for k in w})
    first, last = sum(score[:window]) / window, sum(score[-window:]) / window
    return {"run": str(d), "seed": json.loads((d / "run.json").read_text()).get("seed"), "n_updates": len(ups),
            "reward_first": first, "reward_last": last, "reward_rise": last - first, "kl_first": kl[0],
            "kl_last": kl[-1], "kl_max": max(kl), "win_rate": m["win_rate"], "delta_vs_sft": p["delta"],
            "ci_low_vs_sft": p["ci_low"], "ci_high_vs_sft": p["ci_high"], "gold_score": m.get("judge_score")}


def main(argv=None) -> None:
    import pandas as pd

    from methods.core.paired import mean_se

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    df = pd.DataFrame([row(d, a.window) for d in a.dirs])
    num = [c for c in df.columns if c not in ("run", "seed")]
    stats = [mean_se(df[c].tolist()) for c in num]
    df = pd.concat([df, pd.DataFrame([{"run": "mean", **{c: m for c, (m, _) in zip(num, stats)}},
                                      {"run": "se", **{c: s for c, (_, s) in zip(num, stats)}}])])
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
