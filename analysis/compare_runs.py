"""A leaderboard (with the paired columns) of runs made by separate commands on one eval set.

    python -m analysis.compare_runs NAME=RUN_DIR ... --out leaderboard.csv

Each RUN_DIR is a finished run (metrics.json and its evaluation's annotations); NAME is its row
name. Rows named `sft` and `dpo_seed` are the references of the paired columns, as in a variants
preset's leaderboard (methods.core.leaderboard).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    from methods.core import leaderboard
    from methods.core.io import read_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    dirs = {}
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"{spec!r}: expected NAME=RUN_DIR")
        dirs[name] = Path(path)
    results = {name: read_json(d / "metrics.json") for name, d in dirs.items()}
    leaderboard.write(results, args.out, dirs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
