"""The variants table (`leaderboard.csv`): one flattener for the pipeline and for analysis/.

Rows: per variant, one row per entry of its `iterations` list, then its final row; then the
degenerate references (empty answer, prompt echo) scored by the same evaluator. Every scalar key a
method reports is kept, core columns first, so nothing a method measures is dropped.

With the rows' annotation files at hand, each row also gets its paired difference to `sft` and to
`dpo_seed` (when those rows exist): delta_vs_X in win-rate points, a paired-bootstrap 95% interval
[ci_low_vs_X, ci_high_vs_X] and a sign-test p-value p_sign_vs_X (see methods.core.paired).
"""
from __future__ import annotations

import math
from pathlib import Path

CORE_COLUMNS = [
    "variant", "method", "iteration", "win_rate", "standard_error", "delta_vs_sft", "ci_low_vs_sft",
    "ci_high_vs_sft", "p_sign_vs_sft", "delta_vs_dpo_seed", "ci_low_vs_dpo_seed", "ci_high_vs_dpo_seed",
    "p_sign_vs_dpo_seed", "judge_score", "avg_length", "lc_win_rate", "lc_mode", "n_total", "n_pairs",
    "budget_labelled_pairs", "budget_generated_tokens", "budget_optimizer_steps", "budget_seconds",
]
PAIRED_AGAINST = ("sft", "dpo_seed")


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def flatten(results: dict[str, dict]) -> list[dict]:
    """Rows of the table (see the module docstring); nested values (lists, dicts) are left out."""
    rows = []
    for name, m in results.items():
        for it in m.get("iterations") or []:
            rows.append({"variant": name, "method": m.get("method"), **{k: v for k, v in it.items() if _scalar(v)}})
        rows.append({**{k: v for k, v in m.items() if _scalar(v)}, "variant": name, "iteration": "final"})
    return rows


def add_paired(rows: list[dict], annotations: list[list[dict] | None]) -> list[dict]:
    """Adds the paired columns to rows whose annotations (same order as rows) are known."""
    from methods.core.paired import paired, win_scores

    scores = [win_scores(a) if a is not None else None for a in annotations]
    finals = {r["variant"]: s for r, s in zip(rows, scores) if r.get("iteration") == "final" and s is not None}
    for row, s in zip(rows, scores):
        for ref in PAIRED_AGAINST:
            if s is None or ref not in finals:
                continue
            p = paired(s, finals[ref])
            row.update({f"delta_vs_{ref}": p["delta"], f"ci_low_vs_{ref}": p["ci_low"],
                        f"ci_high_vs_{ref}": p["ci_high"], f"p_sign_vs_{ref}": p["p_sign"]})
    return rows


def frame(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame(rows)
    extra = [c for c in df.columns if c not in CORE_COLUMNS]
    df = df.reindex(columns=[c for c in CORE_COLUMNS if c in df.columns] + extra)
    return df.dropna(axis=1, how="all")  # columns no row reported


def annotation_file(run_dir: Path, metrics: dict) -> Path | None:
    """Where a row's annotations are: its evaluation stage's file; a final row without one, the run's
    top-level file; an iteration row without one was not evaluated (None)."""
    rel = metrics.get("annotations_file")
    if rel:
        return Path(run_dir) / rel
    return Path(run_dir) / "annotations.json" if metrics.get("iteration") == "final" else None


def write(results: dict[str, dict], out: Path, run_dirs: dict[str, Path] | None = None):
    """Build, write (CSV) and print the table; `run_dirs` (name -> run directory) enables the paired columns."""
    from methods.core.io import atomic_write_text, read_json

    rows = flatten(results)
    if run_dirs:
        files = [annotation_file(run_dirs[r["variant"]], r) for r in rows]
        rows = add_paired(rows, [read_json(f) if f is not None and f.is_file() else None for f in files])
    df = frame(rows)
    atomic_write_text(out, df.to_csv(index=False))
    print("\n" + df.to_string(index=False, na_rep="", float_format=_fmt))
    print(f"\nleaderboard: {Path(out).resolve()}")
    return df


def _fmt(x: float) -> str:
    return "" if isinstance(x, float) and math.isnan(x) else f"{x:.2f}"
