"""PIT's paired tables from a finished experiment directory (runs/<experiment>/):

    python -m methods.pit.compare runs/pit_demo [--pit pit] [--other self_refine] [--out results/pit_demo/paired.csv]

Rows: each of PIT's evaluated rows (its inference rounds, ablations, sweep) against PIT's round 0 (y_0,
M_P's own answer: the paper's "over the original responses"), and against the other method's
(Self-Refine's) row of the same round on the same prompts: delta in win-rate points with the
paired-bootstrap 95% interval and the sign test of methods.core.paired. Both methods are judged
against the same baseline answers, so the difference of their per-prompt win scores is their paired
difference."""
from __future__ import annotations

import argparse
from pathlib import Path


def rows_of(variant_dir: Path) -> list[tuple[str, dict]]:
    """(label, win scores) of each evaluated row of a variant: its iterations, then its final row."""
    from methods.core.io import read_json
    from methods.core.leaderboard import annotation_file
    from methods.core.paired import win_scores

    m = read_json(variant_dir / "metrics.json")
    out = []
    for it in m.get("iterations") or []:
        f = annotation_file(variant_dir, it)
        if f is not None and f.is_file():
            out.append((f"{it.get('improver', 'round')}:{it['iteration']}", win_scores(read_json(f))))
    return out


def table(root: Path, pit: str = "pit", other: str | None = "self_refine") -> list[dict]:
    from methods.core.paired import paired

    mine = rows_of(root / pit)
    y0 = dict(mine)["none:0"]
    rows = [{"row": label, "against": "pit y0", **paired(s, y0)} for label, s in mine if label != "none:0"]
    if other and (root / other / "metrics.json").is_file():  # round t against the other's round t
        theirs = {label.split(":")[1]: (label, s) for label, s in rows_of(root / other)}
        for label, s in mine:
            if label.split(":")[1] in theirs:
                o_label, o = theirs[label.split(":")[1]]
                rows.append({"row": label, "against": f"{other} {o_label}", **paired(s, o)})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--pit", default="pit")
    p.add_argument("--other", default="self_refine")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    import pandas as pd

    df = pd.DataFrame(table(a.root, a.pit, a.other))
    print(df.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if a.out:
        from methods.core.io import atomic_write_text

        a.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(a.out, df.to_csv(index=False))


if __name__ == "__main__":
    main()
