"""AlpacaEval table of annotation files: one row per model.

    python -m analysis.winrates FILE... [--pool DIR] [--difficulty FILE] [--eval-set FILE] [--out table.csv]

Each FILE is an alpaca_eval annotations file (.json or .json.gz) of one model against the reference
(output_1); the model's name is its `generator_2`, else the file name. Columns: model, win_rate,
standard_error, n_wins, n_total, avg_length, lc_win_rate (see `methods.core.winrate.summarize`).

The LC win rate's instruction difficulty comes from, in order: `--difficulty FILE` (alpaca_eval's
df_gamed.csv or instruction_difficulty.csv), the same files in the local Hugging Face cache (never
downloaded), an estimate from the annotation files in `--pool DIR` (the scored models need not be
in it), else none (no instruction term; said on stderr). alpaca_eval's tables are keyed by position
in the AlpacaEval set: `--eval-set` (default ../shared/data/alpaca_eval/alpaca_eval_gpt4_baseline.json
when present) re-keys them by instruction, so that files with missing rows still line up.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

COLUMNS = ["model", "win_rate", "standard_error", "n_wins", "n_total", "avg_length", "lc_win_rate"]
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_EVAL_SET = SHARED_DATA / "alpaca_eval" / "alpaca_eval_gpt4_baseline.json"


from methods.core.winrate import annotations_model_name as model_name  # noqa: E402


def pick_difficulty(difficulty_file=None, pool_dir=None, eval_set=None, log=print):
    """The difficulty Series `summarize` takes, or None (see methods.core.winrate.pick_difficulty)."""
    from methods.core.winrate import pick_difficulty as pick

    return pick(difficulty_file, pool_dir, _eval_instructions(eval_set), log)


def _eval_instructions(eval_set):
    from methods.core.io import read_json

    path = Path(eval_set) if eval_set else DEFAULT_EVAL_SET
    return [row["instruction"] for row in read_json(path)] if path.is_file() else None


def table(files, difficulty=None):
    """One row per annotations file, COLUMNS (plus lc_mode and lc_note for the log)."""
    import pandas as pd

    from methods.core.winrate import read_annotations, summarize

    rows = []
    for f in map(Path, files):
        ann = read_annotations(f)
        m = summarize(ann, difficulty)
        rows.append({"model": model_name(f, ann), **{k: m[k] for k in COLUMNS[1:]},
                     "lc_mode": m["lc_mode"], "lc_note": m["lc_note"]})
    return pd.DataFrame(rows, columns=COLUMNS + ["lc_mode", "lc_note"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="annotations files (.json / .json.gz), one model each")
    ap.add_argument("--pool", help="directory of annotation files to estimate the difficulty from")
    ap.add_argument("--difficulty", help="alpaca_eval's df_gamed.csv or instruction_difficulty.csv")
    ap.add_argument("--eval-set", help="the AlpacaEval set (json) whose order keys alpaca_eval's table")
    ap.add_argument("--out", help="write the table here (csv)")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr)

    difficulty = pick_difficulty(args.difficulty, args.pool, args.eval_set, log)
    df = table(args.files, difficulty)
    for _, row in df[df["lc_note"].notna()].iterrows():
        log(f"{row['model']}: {row['lc_note']}")
    print(df[COLUMNS].to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if args.out:
        from methods.core.io import atomic_write_text

        atomic_write_text(args.out, df[COLUMNS].to_csv(index=False))
        log(f"table: {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
