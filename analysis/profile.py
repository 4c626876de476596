"""Where a run's wall time went, per stage, from the `seconds` its stages recorded in `_done.json`.

    python -m analysis.profile RUN_DIR [--out DIR]
    python -m analysis.profile runs/demo/default runs/ser_demo/default ... [--out DIR]   # one row per preset

One row per (run, stage) for the run directory and every variant below it, with the seconds, the
share of the total and the stage's kind (`KINDS`: sample, label, score, train, evaluate, other);
stages that reuse a cache entry show the time they took this time (seconds, not the cache's build).
`by_kind` sums them per run and kind (the table the README shows per demo preset). Writes
profile.csv / profile.md (and profile_by_kind.*) with --out.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# What a stage spends its time on, by its name (first match wins). A stage holding a trainer's
# train_metrics.json is "train" whatever its name; anything unmatched is "other".
KINDS = (
    ("evaluate", re.compile(r"(^|_)eval$|^ref_")),
    ("score", re.compile(r"scores$|^gap_heldout$")),
    ("label", re.compile(r"labels$|pairs$|_data$")),
    ("sample", re.compile(r"samples$|refs$|^refine$|^infer|^y0$")),
)
KIND_ORDER = ["sample", "label", "score", "train", "evaluate", "other"]


def kind(stage_dir: Path, stage: str) -> str:
    if (stage_dir / "train_metrics.json").is_file():
        return "train"
    return next((k for k, pattern in KINDS if pattern.search(stage or "")), "other")


def profile(run_dir: Path):
    import pandas as pd

    rows = []
    for done in sorted(Path(run_dir).rglob("_done.json")):
        info = json.loads(done.read_text())
        if "seconds" not in info:
            continue
        stage_dir = done.parent
        run = next((p for p in [stage_dir, *stage_dir.parents] if (p / "run.json").is_file()), None)
        where = run if run else stage_dir.parent  # references/ has no run.json
        name = str(where.relative_to(run_dir)) if where != Path(run_dir) else ""
        rows.append({"run": name, "stage": info.get("stage"), "kind": kind(stage_dir, info.get("stage")),
                     "seconds": float(info["seconds"])})
    df = pd.DataFrame(rows, columns=["run", "stage", "kind", "seconds"])
    total = df["seconds"].sum()
    df["share"] = df["seconds"] / total if total else float("nan")
    return df


def by_kind(df):
    """Seconds per run (rows) and kind (columns, KIND_ORDER, kinds no stage had left out), with totals."""
    table = df.pivot_table(index="run", columns="kind", values="seconds", aggfunc="sum", fill_value=0.0)
    table = table.reindex(columns=[k for k in KIND_ORDER if k in table.columns])
    table["total"] = table.sum(axis=1)
    table.loc["all"] = table.sum(axis=0)
    return table.reset_index()


def presets(run_dirs: list[Path]):
    """One row per experiment directory: its seconds per kind (KIND_ORDER) and in all, with shares."""
    import pandas as pd

    rows = []
    for d in run_dirs:
        df = profile(d)
        row = {"experiment": d.parent.name if d.name == "default" else d.name}
        row.update({k: float(df.loc[df["kind"] == k, "seconds"].sum()) for k in KIND_ORDER})
        row["total"] = float(df["seconds"].sum())
        rows.append(row)
    table = pd.DataFrame(rows, columns=["experiment", *KIND_ORDER, "total"])
    for k in KIND_ORDER:
        table[f"{k}_share"] = table[k] / table["total"]
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, nargs="+", help="one run directory; several: one row per preset")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from analysis.runs import write_table

    if len(args.run_dir) > 1:
        table = presets(args.run_dir)
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        if args.out:
            write_table(table.round(3), args.out, "profile_presets", "Wall time per kind of stage, per preset",
                        "seconds in stages (model loads and set-up between stages not counted)")
        return 0
    run_dir = args.run_dir[0]
    df = profile(run_dir)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"total {df['seconds'].sum():.0f} s in stages")
    kinds = by_kind(df)
    print(kinds.to_string(index=False, float_format=lambda x: f"{x:.0f}"))
    if args.out:
        note = f"total {df['seconds'].sum():.0f} s in stages (model loads and set-up between stages not counted)"
        write_table(df, args.out, "profile", f"Wall time per stage: {run_dir}", note)
        write_table(kinds.round(1), args.out, "profile_by_kind", f"Wall time per kind of stage: {run_dir}", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
