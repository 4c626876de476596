"""The papers' published numbers as data: one CSV per paper in this package (see README.md).

Columns: paper, arxiv, table, setting, method, metric, value, source, secondary.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["paper", "arxiv", "table", "setting", "method", "metric", "value", "source", "secondary"]


def files() -> dict[str, Path]:
    """{file stem (spa, sso, ser, pit, self_refine): path}."""
    return {p.stem: p for p in sorted(HERE.glob("*.csv"))}


def load(paper: str | None = None):
    """All rows, or one paper's: `paper` is a file stem ("spa") or a `paper` value ("SSO"), any case.

    `value` is float, `secondary` bool (True: read from summaries of the paper, not the paper),
    `table` "" where the source names none.
    """
    import pandas as pd

    frames = [pd.read_csv(p, dtype={"table": str, "arxiv": str}, keep_default_na=False).assign(file=stem)
              for stem, p in files().items()]
    df = pd.concat(frames, ignore_index=True)
    df["value"] = df["value"].astype(float)
    df["secondary"] = df["secondary"].astype(str).str.lower().map({"true": True, "false": False}).astype(bool)
    if paper is not None:
        wanted = df["file"].eq(paper.lower()) | df["paper"].str.lower().eq(paper.lower())
        if not wanted.any():
            raise KeyError(f"no paper {paper!r}; known: {sorted(files())} or {sorted(df['paper'].unique())}")
        df = df[wanted]
    return df[COLUMNS].reset_index(drop=True)
