"""Copy a finished run's small files into results/<table>/, with the command that made them.

    python -m analysis.collect_results RUN_DIR --out results/<table> --command "..." [--wall "12 min 5 s"]

Copies `leaderboard.csv` (when there is one) and, for the run and every sub-run (variant) below it,
`metrics.json`, `run.json`, `config.yaml` and `annotations.json` (only files of at most 1 MB; no
weights, no other generated text), keeping the folder layout; writes `COMMAND.md` with the command,
the wall time given, the code the runs were made with (the commits their `run.json` files record, each
with "+ uncommitted changes" where the tracked files were dirty; `git rev-parse HEAD` now for runs made
before run.json recorded it; --commit overrides) and the list of files.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

FILES = ("leaderboard.csv", "metrics.json", "run.json", "config.yaml", "annotations.json")
MAX_BYTES = 1 << 20


def collect(run_dir: Path, out: Path) -> list[Path]:
    """Copy FILES from the run directory, its runs (folders with a run.json) and references/*/."""
    copied = []
    for f in sorted(run_dir.rglob("*")):
        rel = f.relative_to(run_dir)
        keep_folder = f.parent == run_dir or (f.parent / "run.json").is_file() or rel.parts[0] == "references"
        if f.name in FILES and f.is_file() and f.stat().st_size <= MAX_BYTES and keep_folder:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out / rel)
            copied.append(rel)
    return copied


def recorded_code(run_dir: Path) -> str | None:
    """The distinct code versions the run directory's run.json files record, in the order first seen."""
    import json

    seen = []
    for f in sorted(run_dir.rglob("run.json")):
        for c in json.loads(f.read_text()).get("code") or []:
            text = f"{c['commit'] or 'not a git checkout'}" + (" + uncommitted changes" if c.get("dirty") else "")
            if text not in seen:
                seen.append(text)
    return ", ".join(f"`{t}`" for t in seen) or None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--wall", default="not recorded")
    ap.add_argument("--commit")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    from methods.core.provenance import code_version

    commit = (f"`{args.commit}`" if args.commit else None) or recorded_code(args.run_dir) or \
        f"`{code_version()['commit'] or ''}`"
    files = collect(args.run_dir, args.out)
    text = (f"# {args.out.name}\n\n```bash\n{args.command}\n```\n\n- run directory: `{args.run_dir}`\n"
            f"- git commit: {commit}\n- wall time: {args.wall}\n" + (f"- {args.note}\n" if args.note else "")
            + "\nFiles:\n" + "".join(f"- `{p}`\n" for p in files))
    (args.out / "COMMAND.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
