"""What a run spent: generated tokens, optimiser steps and wall time, counted per stage.

Engines and trainers call `count(...)`; `run_stage` opens a `frame()` around each stage and writes
what it counted into the stage's `_done.json` (`budget`). A frame counts its own work only: a nested
stage or a cache build opens its own frame, and its time is taken out of the enclosing one, so that
the budgets of every `_done.json` under a run directory add up without counting anything twice. A
cache entry records the budget of its build; every stage that uses the entry (built now or reused)
adds it under `reused_*`, so a method's budget is the same whichever run built the shared work.

`spent(run_dir)` sums a run's method stages (not the pipeline's evaluations) into the four
`budget_*` numbers that reach metrics.json.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

KEYS = ("generated_tokens", "optimizer_steps", "seconds")
# metrics that two runs of one command never share (wall time): a resumed run's files equal an
# uninterrupted run's except for these
WALL_TIME_METRICS = ("budget_seconds",)
_frames: list[dict] = []


def count(**amounts: float) -> None:
    """Adds to the innermost open frame (outside any stage, e.g. in a unit test, it is not recorded)."""
    if _frames:
        for k, v in amounts.items():
            _frames[-1][k] = _frames[-1].get(k, 0) + v


@contextmanager
def frame():
    """Counts what runs inside; yields the dict, complete (with `seconds`) when the block ends."""
    f = {k: 0 for k in KEYS}
    f["_child_seconds"] = 0.0
    _frames.append(f)
    t0 = time.perf_counter()
    try:
        yield f
    finally:
        _frames.pop()
        elapsed = time.perf_counter() - t0
        f["seconds"] = round(elapsed - f.pop("_child_seconds"), 1)
        if _frames:  # the enclosing frame does not count this block's time as its own
            _frames[-1]["_child_seconds"] += elapsed


def reuse(entry_budget: dict | None) -> None:
    """A cache entry's recorded build budget, added to the current frame as `reused_<key>`."""
    for k in KEYS:
        if entry_budget and entry_budget.get(k):
            count(**{f"reused_{k}": entry_budget[k]})


def spent(run_dir: str | Path) -> dict:
    """`budget_<key>` for each key: own plus reused amounts over the run's finished method stages."""
    from methods.core.contract import reserved
    from methods.core.io import read_json

    root = Path(run_dir)
    total = {k: 0.0 for k in KEYS}
    for done in root.rglob("_done.json"):
        rel = done.parent.relative_to(root)
        if not rel.parts or reserved(rel.parts[0]) or any(".stale-" in p for p in rel.parts):
            continue
        b = read_json(done).get("budget") or {}
        for k in KEYS:
            total[k] += b.get(k, 0) + b.get(f"reused_{k}", 0)
    out = {f"budget_{k}": int(v) for k, v in total.items() if k != "seconds"}
    out["budget_seconds"] = round(total["seconds"], 1)
    return out
