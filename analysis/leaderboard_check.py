"""Recompute alpaca_eval's AlpacaEval 2.0 leaderboard from its annotations, offline, and compare.

    python -m analysis.leaderboard_check [ANNOTATIONS_DIR] [--loo] [--out errors.csv]

ANNOTATIONS_DIR (default ../shared/data/alpaca_eval/annotations_gpt4_turbo) holds one
`<model>.json.gz` per model. The instruction difficulty is estimated from the whole directory
(`--loo`: from all models but the one scored, i.e. as for a model outside the pool). Prints one row
per model (ours, the leaderboard's, the differences) and the mean/max absolute errors.

Measured (41 files, 40 models besides the baseline's self-annotation, which is 50 by construction):
raw win rate max abs error < 1e-9; LC mean abs error 0.57, max 3.37 (text_davinci_001), mean +0.04;
with --loo 0.71 / 3.25. The two largest misses are files with missing annotations
(text_davinci_001 -3.4, alpaca-7b_verbose -1.6): alpaca_eval keys its difficulty by row position,
which shifts it after a missing row, while we key it by instruction (a likely cause, not checkable
without its table). Without the four such files (those two, phi-2, alpaca-7b_concise): 0.48 / 2.09
(claude-2, +2.1; the Claude models are the ones we overestimate most).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DIR = SHARED_DATA / "alpaca_eval" / "annotations_gpt4_turbo"


def load_dir(directory: str | Path) -> dict:
    """{model name (file name without .json/.json.gz): annotations DataFrame}, sorted by name."""
    from methods.core.winrate import read_annotations

    files = sorted(Path(directory).glob("*.json*"))
    return {model_name(f): read_annotations(f) for f in files}


def model_name(path: Path) -> str:
    """An annotation file's model: its name without .json / .json.gz."""
    return path.name.removesuffix(".gz").removesuffix(".json")


def compare(pool: dict, difficulty=None, loo: bool = False):
    """One row per model in `pool` that the leaderboard lists: ours vs the leaderboard's figures.

    `difficulty` defaults to `estimate_difficulty(pool)`; with `loo` it is re-estimated without
    each model in turn.
    """
    import pandas as pd

    from methods.core.winrate import estimate_difficulty, leaderboard_path, summarize

    board = pd.read_csv(leaderboard_path(), index_col=0)
    if difficulty is None and not loo:
        difficulty = estimate_difficulty(pool)
    rows = []
    for name, ann in pool.items():
        if name not in board.index:
            continue
        d = estimate_difficulty({k: v for k, v in pool.items() if k != name}) if loo else difficulty
        m = summarize(ann, d)
        ref = board.loc[name]
        rows.append({
            "model": name,
            "win_rate": m["win_rate"], "lb_win_rate": ref["win_rate"],
            "lc_win_rate": m["lc_win_rate"], "lb_lc_win_rate": ref["length_controlled_winrate"],
            "standard_error": m["standard_error"], "lb_standard_error": ref["standard_error"],
            "avg_length": m["avg_length"], "lb_avg_length": ref["avg_length"],
            "lc_mode": m["lc_mode"],
            "reference": bool((ann["generator_1"] == ann["generator_2"]).all()),
        })
    out = pd.DataFrame(rows)
    out["wr_error"] = out["win_rate"] - out["lb_win_rate"]
    out["lc_error"] = out["lc_win_rate"] - out["lb_lc_win_rate"]
    return out


def errors(table) -> dict:
    """Mean/max absolute errors of win rate and LC win rate over the models of `compare`.

    The reference's self-annotation (50 by construction on both sides) is left out.
    """
    table = table[~table["reference"]]
    return {
        "n_models": int(len(table)),
        "wr_max_abs_error": float(table["wr_error"].abs().max()),
        "lc_mean_abs_error": float(table["lc_error"].abs().mean()),
        "lc_max_abs_error": float(table["lc_error"].abs().max()),
        "lc_mean_error": float(table["lc_error"].mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--loo", action="store_true", help="estimate the difficulty without the model scored")
    ap.add_argument("--out", help="write the per-model comparison here (csv)")
    args = ap.parse_args(argv)
    if not Path(args.directory).is_dir():
        print(f"no annotations directory at {args.directory}", file=sys.stderr)
        return 2
    table = compare(load_dir(args.directory), loo=args.loo)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(table.sort_values("lc_error").to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print({k: round(v, 3) for k, v in errors(table).items()})
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
