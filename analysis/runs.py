"""Finished runs of the suite as tables, for the analysis notebooks.

A finished run is a directory with `run.json` ({method, variant, experiment, model, data, seed,
seed_fraction}) beside `metrics.json` ({win_rate, standard_error, lc_win_rate, avg_length, n_total,
n_wins, n_draws, optionally iterations: [{iteration, self_label_accuracy, win_rate, lc_win_rate,
standard_error, noisy_share, ...}]}). A `metrics.json` without a `run.json` beside it (e.g. a
stage's own copy under `eval/`) is not a run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

RUN_FIELDS = ["method", "variant", "experiment", "model", "data", "seed", "seed_fraction"]
METRIC_FIELDS = ["win_rate", "standard_error", "lc_win_rate", "avg_length", "n_total", "n_wins", "n_draws"]
TEXT_METRIC_FIELDS = ["lc_mode", "judge_version"]
ITERATION_FIELDS = ["iteration", "self_label_accuracy", "win_rate", "lc_win_rate", "standard_error",
                    "noisy_share"]


def find_runs(runs_dir: str | Path) -> list[Path]:
    """Run directories under `runs_dir`, sorted."""
    return sorted(p.parent for p in Path(runs_dir).rglob("metrics.json") if (p.parent / "run.json").is_file())


def _read(run_dir: Path) -> tuple[dict, dict]:
    return (json.loads((run_dir / "run.json").read_text(encoding="utf-8")),
            json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")))


def config_id(run_dir: Path) -> str | None:
    """A hash of the run's pinned config less its seeds and run-specific names: runs with equal ids
    differ only in `seed`, so they may be averaged as seeds of one setting (None without config.yaml)."""
    import hashlib

    import yaml

    f = Path(run_dir) / "config.yaml"
    if not f.is_file():
        return None
    cfg = yaml.safe_load(f.read_text())
    for k in ("seed", "variant"):
        cfg.pop(k, None)
    strip_seeds(cfg)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:10]


def strip_seeds(cfg: dict) -> dict:
    """Drop the training seed of every trainer a pinned config holds: `trainers.<role>.args.seed`, the
    method's resolved copies (`method.<role>_trainer.args.seed`) and, for older runs, `trainer.args.seed`."""
    nodes = [cfg.get("trainer"), *(cfg.get("trainers") or {}).values(),
             *(v for k, v in (cfg.get("method") or {}).items() if k.endswith("trainer"))]
    for node in nodes:
        if isinstance(node, dict) and isinstance(node.get("args"), dict):
            node["args"].pop("seed", None)
    return cfg


def load_runs(runs_dir: str | Path):
    """One row per run: RUN_FIELDS, METRIC_FIELDS, n_iterations and run_dir (missing values NaN)."""
    import pandas as pd

    rows = []
    for d in find_runs(runs_dir):
        info, metrics = _read(d)
        rows.append({**{k: info.get(k) for k in RUN_FIELDS},
                     **{k: metrics.get(k) for k in METRIC_FIELDS + TEXT_METRIC_FIELDS},
                     "n_iterations": len(metrics.get("iterations") or []), "config_id": config_id(d),
                     "run_dir": str(d)})
    df = pd.DataFrame(rows, columns=RUN_FIELDS + METRIC_FIELDS + TEXT_METRIC_FIELDS
                      + ["n_iterations", "config_id", "run_dir"])
    return _numeric(df, METRIC_FIELDS + ["seed", "seed_fraction"])


def load_iterations(runs_dir: str | Path):
    """One row per (run, iteration): RUN_FIELDS, ITERATION_FIELDS, any other per-iteration keys, run_dir."""
    import pandas as pd

    rows = []
    for d in find_runs(runs_dir):
        info, metrics = _read(d)
        for it in metrics.get("iterations") or []:
            rows.append({**{k: info.get(k) for k in RUN_FIELDS}, **{k: it.get(k) for k in ITERATION_FIELDS},
                         **{k: v for k, v in it.items() if k not in ITERATION_FIELDS}, "config_id": config_id(d),
                         "run_dir": str(d)})
    df = pd.DataFrame(rows)
    df = df.reindex(columns=list(dict.fromkeys(RUN_FIELDS + ITERATION_FIELDS + list(df.columns))))
    return _numeric(df, ITERATION_FIELDS[1:] + ["iteration", "seed", "seed_fraction"])


def _numeric(df, columns):
    import pandas as pd

    for c in columns:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def label(df):
    """The name a run is shown under: its variant, else its method."""
    has_variant = df["variant"].notna() & (df["variant"].astype(str) != "")
    return df["variant"].where(has_variant, df["method"]).astype(str)


def mean_with_error(group, value: str, se: str | None = "standard_error"):
    """(mean over seeds, error): std error across seeds, or the run's own SE when there is one seed."""
    import numpy as np

    values = group[value].dropna()
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:
        own = group.loc[values.index[0], se] if se and se in group.columns else math.nan
        return float(values.iloc[0]), float(own) if own is not None else math.nan
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def markdown_table(df, floatfmt: str = ".2f") -> str:
    """A GitHub markdown table (no tabulate dependency); NaN, NA and None print as empty cells."""

    import pandas as pd

    def cell(v):
        if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
            return ""
        return format(v, floatfmt) if isinstance(v, float) else str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def write_table(df, out_dir: str | Path, stem: str, title: str, note: str = "") -> tuple[Path, Path]:
    """Write OUT_DIR/stem.csv and OUT_DIR/stem.md (title, optional note, table)."""
    from methods.core.io import atomic_write_text

    out_dir = Path(out_dir)
    csv = atomic_write_text(out_dir / f"{stem}.csv", df.to_csv(index=False))
    text = f"# {title}\n\n" + (f"{note}\n\n" if note else "") + markdown_table(df)
    md = atomic_write_text(out_dir / f"{stem}.md", text)
    return csv, md
