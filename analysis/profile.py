"""Where a run's wall time went, per stage, from the `seconds` its stages recorded in `_done.json`.

    python -m analysis.profile RUN_DIR [--out DIR]

One row per (run, stage) for the run directory and every variant below it, with the seconds and
the share of the total; stages that reuse a cache entry show the time they took this time
(seconds, not the cache's build). Writes profile.csv / profile.md with --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def profile(run_dir: Path):
    import pandas as pd

    rows = []
    for done in sorted(Path(run_dir).rglob("_done.json")):
        info = json.loads(done.read_text())
        if "seconds" not in info:
            continue
        stage_dir = done.parent
        run = next((p for p in [stage_dir, *stage_dir.parents] if (p / "run.json").is_file()), None)
        rows.append({"run": str(run.relative_to(run_dir)) if run else "", "stage": info.get("stage"),
                     "seconds": float(info["seconds"])})
    df = pd.DataFrame(rows, columns=["run", "stage", "seconds"])
    total = df["seconds"].sum()
    df["share"] = df["seconds"] / total if total else float("nan")
    return df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    df = profile(args.run_dir)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"total {df['seconds'].sum():.0f} s in stages")
    if args.out:
        from analysis.runs import write_table

        write_table(df, args.out, "profile", f"Wall time per stage: {args.run_dir}",
                    f"total {df['seconds'].sum():.0f} s in stages (model loads and set-up between stages not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
