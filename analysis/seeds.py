"""Mean ± SE over seeds of variant tables that share their data seed.

    python -m analysis.seeds RUN_DIR... [--out DIR]

Each RUN_DIR holds a `leaderboard.csv` of one variants preset run with one training `seed` (e.g.
runs/demo/default, runs/demo/seed=1, runs/demo/seed=2). Rows are matched by (variant, iteration);
for every numeric column the table gives the mean over seeds and its standard error (sample std,
ddof 1, / sqrt(n seeds)), and `n_seeds`. The tables must come from the same eval set: runs whose
configs differ in anything but `seed` (and the run directory) are refused, naming the key.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHOWN = ["win_rate", "delta_vs_sft", "delta_vs_dpo_seed", "judge_score", "avg_length", "n_pairs",
         "unfinished_share"]


def _pinned(run_dir: Path) -> dict:
    """The first variant's pinned config, less what a seed sweep may change."""
    import yaml

    files = sorted(p.parent / "config.yaml" for p in run_dir.glob("*/run.json"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no */config.yaml (not a variants run directory)")
    cfg = yaml.safe_load(files[0].read_text())
    for k in ("seed", "variant"):
        cfg.pop(k, None)
    from analysis.runs import strip_seeds

    return strip_seeds(cfg)


def _diff(a, b, path="") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    return None if a == b else path


def seeds_table(run_dirs: list[Path]):
    import pandas as pd

    from methods.core.paired import mean_se

    configs = [_pinned(d) for d in run_dirs]
    for d, c in zip(run_dirs[1:], configs[1:]):
        key = _diff(configs[0], c)
        if key:
            raise ValueError(f"{d} differs from {run_dirs[0]} in {key!r}: not seeds of one setting")
    frames = [pd.read_csv(d / "leaderboard.csv").assign(_run=str(d)) for d in run_dirs]
    df = pd.concat(frames, ignore_index=True)
    df["iteration"] = df["iteration"].astype(str)
    rows = []
    for (variant, iteration), g in df.groupby(["variant", "iteration"], sort=False):
        row = {"variant": variant, "iteration": iteration, "n_seeds": len(g)}
        for col in SHOWN:
            if col in g and g[col].notna().any():
                m, se = mean_se(g[col].dropna().tolist())
                row[col], row[f"{col}_se"] = m, se
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="write seeds.csv and seeds.md here")
    args = ap.parse_args(argv)
    df = seeds_table(args.run_dirs)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.out:
        from analysis.runs import write_table

        write_table(df, args.out, "seeds", "Mean ± SE over seeds",
                    "runs: " + ", ".join(map(str, args.run_dirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
