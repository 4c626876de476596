"""The code a run was made with, for its run.json: the suite's git commit and whether tracked files had
uncommitted changes (`dirty`), one entry per commit a run directory has seen.

A run resumed at another commit keeps the earlier entry and appends the new one, so a result made
across a code change says so; a resume at the same commit adds nothing (run.json stays byte-identical,
as a killed and re-run run's files must). Outside a git checkout the commit is null. A command's
runs (its variants) all record the code as it was when the command started (`at_start`), the code its
process imported, even when the checkout moves on while it runs.
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def code_version(repo: Path = REPO) -> dict:
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


@functools.cache
def at_start() -> dict:
    """`code_version()` at this process's first call (the pipeline calls it before any run starts)."""
    return code_version()


def code_history(previous: list[dict] | None, now: dict) -> list[dict]:
    """`previous` (the run.json's list so far) with `now` appended unless it equals the last entry."""
    history = list(previous or [])
    return history if history and history[-1] == now else history + [now]
