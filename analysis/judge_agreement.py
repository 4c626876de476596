"""How far a judge agrees with GPT-4 Turbo on the AlpacaEval 2.0 leaderboard's own annotations.

    python -m analysis.judge_agreement --judge llm [--annotations DIR] [--n 200] [--seed 0]
        [--model tiny_llama] [--margin 0.4] [--out agreement.json] [hydra overrides ...]

DIR (default ../shared/data/alpaca_eval/annotations_gpt4_turbo) holds `<model>.json.gz` files of
`weighted_alpaca_eval_gpt4_turbo` annotations: output_1 = gpt4_1106_preview's reference, output_2 =
the model's, preference in [1, 2]. The pool is every row of every file whose two generators differ
and whose preference is a number, ordered by (file name, row); `--n` of them are drawn with
`random.Random(seed).sample` (deterministic). The judge (`conf/judge/<name>.yaml`, composed with the
suite's config; `--model NAME` makes its model `conf/model/NAME`; further `key=value` arguments are
Hydra overrides, e.g. judge.batch_size=4) judges each pair in both orders:
`compare_orders` where the judge has it (the llm judge: one pass gives both), else `compare` twice.

Figures (`agreement_metrics`; percentages; a preference's decision is 1 below 1.5, 2 above, tie at 1.5):
- agreement: the judge's decision (mean of its two orders) equals GPT-4 Turbo's;
- decisive_agreement: the same over pairs where GPT-4 Turbo is decisive, |preference − 1.5| ≥ margin;
- position_bias_rate: pairs whose decision differs between the two orders;
- judge_prefers_longer / gpt4_prefers_longer: over pairs of unequal length (characters), the share
  where the decision picks the longer output (a tie counts half);
- mean_abs_diff: mean |judge − GPT-4 Turbo| of the soft preferences; judge/gpt4_mean_preference.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

from analysis.leaderboard_check import DEFAULT_DIR, model_name

TIE_TOL = 1e-6


def decision(p: float) -> float:
    return 1.5 if abs(p - 1.5) <= TIE_TOL else (1.0 if p < 1.5 else 2.0)


def _pct(xs) -> float:
    xs = list(xs)
    return 100 * sum(xs) / len(xs) if xs else float("nan")


def _longer_score(pref: float, len_1: int, len_2: int) -> float:
    d = decision(pref)
    if d == 1.5:
        return 0.5
    return float((d == 2.0) == (len_2 > len_1))


def agreement_metrics(judge_fwd, judge_bwd, gold, len_1, len_2, margin: float = 0.4) -> dict:
    """The figures above from one-order judge preferences (both in the original orientation).

    Hand-made case (tests/test_judges.py):
        gold = [1.0, 2.0, 1.95, 1.3]; fwd = [1.2, 1.8, 1.4, 1.6]; bwd = [1.2, 1.6, 1.2, 1.2]
        len_1 = [10, 5, 7, 3]; len_2 = [20, 5, 1, 9]
        judge = [1.2, 1.7, 1.3, 1.4] -> decisions 1, 2, 1, 1; GPT-4's 1, 2, 2, 1 -> agreement 75.0
        decisive (|gold-1.5| >= 0.4): pairs 1-3 -> 2 of 3 -> 66.67
        one-order decisions 1,2,1,2 vs 1,2,1,1 -> position_bias_rate 25.0
        unequal lengths: pairs 1, 3, 4; judge picks shorter, longer, shorter -> 33.33; GPT-4
        shorter, shorter, shorter -> 0.0; mean_abs_diff = (.2+.3+.65+.1)/4 = 0.3125
    """
    n = len(gold)
    if not n == len(judge_fwd) == len(judge_bwd) == len(len_1) == len(len_2):
        raise ValueError("agreement_metrics: all lists need the same length")
    judge = [(f + b) / 2 for f, b in zip(judge_fwd, judge_bwd)]
    decisive = [k for k in range(n) if abs(gold[k] - 1.5) >= margin]
    unequal = [k for k in range(n) if len_1[k] != len_2[k]]
    return {
        "n": n,
        "agreement": _pct(decision(j) == decision(g) for j, g in zip(judge, gold)),
        "decisive_agreement": _pct(decision(judge[k]) == decision(gold[k]) for k in decisive),
        "n_decisive": len(decisive),
        "position_bias_rate": _pct(decision(f) != decision(b) for f, b in zip(judge_fwd, judge_bwd)),
        "judge_prefers_longer": _pct(_longer_score(judge[k], len_1[k], len_2[k]) for k in unequal),
        "gpt4_prefers_longer": _pct(_longer_score(gold[k], len_1[k], len_2[k]) for k in unequal),
        "n_unequal_length": len(unequal),
        "mean_abs_diff": sum(abs(j - g) for j, g in zip(judge, gold)) / n if n else float("nan"),
        "judge_mean_preference": sum(judge) / n if n else float("nan"),
        "gpt4_mean_preference": sum(gold) / n if n else float("nan"),
        "margin": margin,
    }


def sample_pairs(directory: str | Path, n: int, seed: int = 0) -> list[dict]:
    """`n` annotation rows drawn deterministically from every file of `directory` (see module doc)."""
    from methods.core.io import read_json

    files = sorted(Path(directory).glob("*.json*"))
    if not files:
        raise FileNotFoundError(f"{directory}: no annotation files (*.json, *.json.gz)")
    pool = []
    for f in files:
        model = model_name(f)
        for k, r in enumerate(read_json(f)):
            p = r.get("preference")
            if (r.get("generator_1") == r.get("generator_2") or not isinstance(p, (int, float))
                    or math.isnan(p) or not isinstance(r.get("output_1"), str) or not isinstance(r.get("output_2"), str)):
                continue
            pool.append({"id": f"{model}:{k}", "instruction": r["instruction"], "output_1": r["output_1"],
                         "output_2": r["output_2"], "generator_2": r["generator_2"], "preference": 1.5 if p == 0 else float(p)})
    if n > len(pool):
        raise ValueError(f"--n {n}: the pool has only {len(pool)} pairs")
    return [pool[k] for k in sorted(random.Random(seed).sample(range(len(pool)), n))]


def build_judge(name: str, model: str | None = None, overrides=()):
    """The judge of `conf/judge/<name>.yaml` composed with the suite's config, validated."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    import experiments.run  # noqa: F401  (registers the config resolvers)

    extra = [f"model={model}", "judge.model=${model}"] if model else []
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"judge={name}", *extra, *overrides])
    judge = instantiate(cfg.judge)
    if hasattr(judge, "validate"):
        judge.validate(None)
    return judge


def judge_both_orders(judge, items, o1, o2) -> tuple[list[float], list[float]]:
    if hasattr(judge, "compare_orders"):
        return judge.compare_orders(items, o1, o2)
    fwd = judge.compare(items, o1, o2)
    return fwd, [3 - p for p in judge.compare(items, o2, o1)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", required=True, help="a conf/judge choice: llm, reward_model, alpaca_eval")
    ap.add_argument("--annotations", default=str(DEFAULT_DIR))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--margin", type=float, default=0.4)
    ap.add_argument("--model", default=None, help="a conf/model choice for the judge's model (e.g. tiny_llama)")
    ap.add_argument("--out", default=None, help="write the figures as JSON")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. judge.batch_size=4")
    args = ap.parse_args(argv)

    pairs = sample_pairs(args.annotations, args.n, args.seed)
    judge = build_judge(args.judge, args.model, args.overrides)
    t0 = time.perf_counter()
    items = [{"id": p["id"], "instruction": p["instruction"]} for p in pairs]
    fwd, bwd = judge_both_orders(judge, items, [p["output_1"] for p in pairs], [p["output_2"] for p in pairs])
    m = agreement_metrics(fwd, bwd, [p["preference"] for p in pairs], [len(p["output_1"]) for p in pairs],
                          [len(p["output_2"]) for p in pairs], args.margin)
    m.update({"judge": getattr(judge, "name", args.judge), "judge_model": args.model, "seed": args.seed,
              "annotations": str(args.annotations), "seconds": round(time.perf_counter() - t0, 1),
              "pairs": [p["id"] for p in pairs]})
    for k in ("n", "agreement", "decisive_agreement", "n_decisive", "position_bias_rate", "judge_prefers_longer",
              "gpt4_prefers_longer", "mean_abs_diff", "judge_mean_preference", "gpt4_mean_preference", "seconds"):
        v = m[k]
        print(f"{k:>22}: {v:.2f}" if isinstance(v, float) else f"{k:>22}: {v}")
    if args.out:
        from methods.core.io import atomic_write_json

        atomic_write_json(args.out, m)
        print(f"figures: {Path(args.out).resolve()}")
    return m


if __name__ == "__main__":
    main(sys.argv[1:])
