"""The head-to-head table and its two figures, from `experiment=compare` (or compare_small) runs.

    python -m analysis.compare SEED_RUN_DIR... [--fractions RUN_DIR...] --out results/compare

SEED_RUN_DIRs are one preset run per training seed (same config but `seed`, refused otherwise). Writes:
- `compare.csv` / `.md`: per variant (references included) the win rate's mean ± SE over seeds, the
  paired difference to `sft` and to `dpo_seed` pooled over seeds (per prompt, its win score averaged
  over the seeds, then a paired bootstrap over prompts and a sign test: methods.core.paired), the gold
  judge's score, avg_length, and the budget each spent (means over seeds: human-labelled pairs,
  generated tokens, optimiser steps, wall seconds of its stages);
- `self_label_accuracy.png` / `.csv`: per method that labels its own data, the share of its labels the
  gold judge agrees with (ties excluded), per iteration, mean ± SE over seeds. The rows: iterative DPO's
  and SPA's `self_label_accuracy` per iteration; SER's per loop (loop n: the pairs RM_{n-1} labelled
  into D_n); SSO's principle pairs (y+ over y-): the SFT model's at iteration 0, those the policy trains
  on (the generator's) at iteration 1 (`before_` / `after_principle_pair_accuracy`); SER's policy pairs
  (`policy=dpo`: the final RM's labels on every non-seed pair, what its policy trains on) as their own
  line, "ser (policy pairs)", at its last loop;
- `label_efficiency.png` / `.csv`: the win rate against the human-labelled pairs a run used, one line
  per variant over the seed fractions found among SEED_RUN_DIRs and `--fractions` (other seed fractions
  of the same preset); with one fraction each variant is a single point.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BUDGET = ["budget_labelled_pairs", "budget_generated_tokens", "budget_optimizer_steps", "budget_seconds"]
REFERENCES = ("sft", "dpo_seed")


def _finals(run_dir: Path):
    import pandas as pd

    df = pd.read_csv(run_dir / "leaderboard.csv")
    return df[df["iteration"].astype(str) == "final"].set_index("variant")


def _annotations(run_dir: Path, variant: str, method: str) -> Path:
    return run_dir / ("references" if method == "reference" else "") / variant / "annotations.json"


def _scores(run_dirs: list[Path], variant: str, method: str) -> dict[str, float]:
    """instruction -> win score averaged over the seeds (prompts every seed has)."""
    from methods.core.paired import pooled_scores, win_scores

    return pooled_scores([win_scores(json.loads(_annotations(d, variant, method).read_text())) for d in run_dirs])


def compare_table(run_dirs: list[Path]):
    import pandas as pd

    from analysis.seeds import seeds_table
    from methods.core.paired import mean_se, paired

    seeds_table(run_dirs)  # refuses runs that are not seeds of one setting
    finals = [_finals(d) for d in run_dirs]
    variants = [v for v in finals[0].index if all(v in f.index for f in finals)]
    methods = finals[0]["method"]
    scores = {v: _scores(run_dirs, v, methods[v]) for v in variants}
    rows = []
    for v in variants:
        row = {"variant": v, "method": methods[v], "n_seeds": len(run_dirs)}
        for col in ["win_rate", "judge_score", "avg_length", *BUDGET]:
            vals = [f.loc[v, col] for f in finals if col in f and pd.notna(f.loc[v, col])]
            if vals:
                row[col], se = mean_se(vals)
                if col == "win_rate":
                    row["win_rate_se"] = se
        for ref in REFERENCES:
            if ref in scores and v != ref:
                p = paired(scores[v], scores[ref])
                row.update({f"delta_vs_{ref}": p["delta"], f"ci_low_vs_{ref}": p["ci_low"],
                            f"ci_high_vs_{ref}": p["ci_high"], f"p_sign_vs_{ref}": p["p_sign"]})
        rows.append(row)
    paired_cols = [f"{c}_vs_{ref}" for ref in REFERENCES for c in ("delta", "ci_low", "ci_high", "p_sign")]
    order = ["variant", "method", "n_seeds", "win_rate", "win_rate_se", *paired_cols, "judge_score", "avg_length",
             *BUDGET]
    df = pd.DataFrame(rows)
    return df.reindex(columns=[c for c in order if c in df.columns])


def self_label_rows(run_dirs: list[Path]):
    """(variant, method, seed, iteration, accuracy) for every self-labelling method's iterations."""
    import pandas as pd

    rows = []
    for d in run_dirs:
        for f in sorted(d.glob("*/metrics.json")):
            m, seed = json.loads(f.read_text()), json.loads((f.parent / "run.json").read_text())["seed"]
            base = {"variant": f.parent.name, "method": m.get("method"), "seed": seed}
            for it in m.get("iterations") or []:
                if it.get("self_label_accuracy") is not None:
                    rows.append({**base, "iteration": int(it["iteration"]), "accuracy": it["self_label_accuracy"],
                                 "n_labels": it.get("n_gold_decided", it.get("n_gold_known")),
                                 "oracle": m.get("labeler") == "gold"})
            if m.get("policy_pairs_self_label_accuracy") is not None:  # SER: the final RM's labels its policy trains on
                last = max((int(it["iteration"]) for it in m.get("iterations") or []), default=0)
                rows.append({**base, "variant": f"{base['variant']} (policy pairs)", "iteration": last,
                             "accuracy": m["policy_pairs_self_label_accuracy"],
                             "n_labels": m.get("policy_pairs_n_gold_known"), "oracle": False})
            for it, key in ((0, "before_principle_pair_accuracy"), (1, "after_principle_pair_accuracy")):
                if m.get(key) is not None:
                    n = m.get(key.replace("principle_pair_accuracy", "n_gold_decided"))
                    rows.append({**base, "iteration": it, "accuracy": m[key], "n_labels": n, "oracle": False})
    return pd.DataFrame(rows, columns=["variant", "method", "seed", "iteration", "accuracy", "n_labels", "oracle"])


def _mean_se_by(df, keys: list[str], cols: list[str], sums: tuple[str, ...] = ()):
    """Per group of `keys`: each of `cols` as mean and `<col>_se` over the group's rows (seeds), each of
    `sums` summed, and `n_seeds`."""
    import pandas as pd

    from methods.core.paired import mean_se

    out = []
    for key, g in df.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for col in cols:
            row[col], row[f"{col}_se"] = mean_se(g[col].tolist())
        row.update({c: g[c].sum(min_count=1) for c in sums})  # NaN, not 0, when no row counted it
        out.append({**row, "n_seeds": len(g)})
    return pd.DataFrame(out)


def label_efficiency_rows(run_dirs: list[Path]):
    """(variant, seed_fraction, seed, labelled pairs, win rate) per variant run of every given directory."""
    import pandas as pd

    rows = []
    for d in run_dirs:
        for v, r in _finals(d).iterrows():
            if r["method"] == "reference":
                continue
            info = json.loads((d / v / "run.json").read_text())
            rows.append({"variant": v, "seed_fraction": info["seed_fraction"], "seed": info["seed"],
                         "labelled_pairs": r.get("budget_labelled_pairs"), "win_rate": r["win_rate"]})
    return pd.DataFrame(rows)


def _plot(table, x: str, y: str, path: Path, xlabel: str, ylabel: str, title: str, style=None,
          hline: tuple[float, str] | None = None, integer_x: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, g in table.groupby("variant", sort=False):
        g = g.sort_values(x)
        kw = style(variant) if style else {}
        ax.errorbar(g[x], g[y], yerr=g[f"{y}_se"].fillna(0), marker="o", capsize=3, **{"label": variant, **kw})
    if hline is not None:
        ax.axhline(hline[0], color="gray", linestyle="--", linewidth=0.8, label=hline[1])
    if integer_x:
        ax.set_xticks(sorted(table[x].unique()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--fractions", nargs="*", type=Path, default=[], help="the preset at other seed fractions")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from analysis.runs import write_table

    args.out.mkdir(parents=True, exist_ok=True)
    table = compare_table(args.run_dirs)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    write_table(table, args.out, "compare", "Head to head: mean ± SE over seeds, paired over prompts",
                "runs: " + ", ".join(map(str, args.run_dirs)))

    acc = self_label_rows(args.run_dirs)
    # n_labels: the labels the gold judge decided, summed over seeds
    acc_table = _mean_se_by(acc, ["variant", "method", "iteration"], ["accuracy"], sums=("n_labels",)) \
        if len(acc) else acc
    acc_table.to_csv(args.out / "self_label_accuracy.csv", index=False)
    if len(acc_table):
        oracle = set(acc[acc["oracle"]]["variant"])
        _plot(acc_table, "iteration", "accuracy", args.out / "self_label_accuracy.png", "iteration",
              "labels the gold judge agrees with (ties excluded)", "Self-label accuracy against the gold judge",
              style=lambda v: {"linestyle": ":", "label": f"{v} (oracle: gold labels)"} if v in oracle else {},
              hline=(0.5, "chance"), integer_x=True)

    eff = label_efficiency_rows(args.run_dirs + args.fractions)
    eff_table = _mean_se_by(eff, ["variant", "seed_fraction"], ["win_rate", "labelled_pairs"])
    eff_table.to_csv(args.out / "label_efficiency.csv", index=False)
    _plot(eff_table, "labelled_pairs", "win_rate", args.out / "label_efficiency.png",
          "human-labelled pairs used", "win rate vs SFT (gold judge)",
          "Label efficiency (mean ± SE over the seeds run at each seed fraction)", hline=(50.0, "SFT (the baseline)"))
    print(f"wrote {args.out}/compare.csv, .md, self_label_accuracy.png/.csv, label_efficiency.png/.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
