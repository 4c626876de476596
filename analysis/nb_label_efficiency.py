# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Label efficiency
#
# Win rate against the share of human-labelled seed data (`seed_fraction` in run.json), per method
# (or variant), mean over seeds; error bars are the std error across seeds, or the run's own SE with
# one seed. Runs without a seed fraction are left out. Writes `OUT_DIR/label_efficiency.png`, `.md`
# and `.csv`. Run headless: `python analysis/nb_label_efficiency.py`.

# %% tags=["parameters"]
import os

RUNS_DIR = os.environ.get("RUNS_DIR", "runs")
OUT_DIR = os.environ.get("OUT_DIR", "analysis/out")

# %%
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("analysis") is None:  # run as a script from the repo root, not installed
    sys.path.insert(0, str(Path.cwd()))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from analysis.runs import label, load_runs, mean_with_error, write_table

runs = load_runs(RUNS_DIR)
runs["label"] = label(runs) if len(runs) else pd.Series(dtype=str)
with_fraction = runs[runs["seed_fraction"].notna()]
print(f"{len(runs)} runs, {len(with_fraction)} with a seed fraction, under {Path(RUNS_DIR).resolve()}")

# %%
rows = []
for (name, method, fraction), group in with_fraction.groupby(["label", "method", "seed_fraction"], sort=True):
    wr, wr_err = mean_with_error(group, "win_rate")
    lc, lc_err = mean_with_error(group, "lc_win_rate", None)
    rows.append({"label": name, "method": method, "seed_fraction": fraction,
                 "n_seeds": int(group["win_rate"].notna().sum()), "win_rate": wr, "win_rate_err": wr_err,
                 "lc_win_rate": lc, "lc_win_rate_err": lc_err})
table = pd.DataFrame(rows, columns=["label", "method", "seed_fraction", "n_seeds", "win_rate", "win_rate_err",
                                    "lc_win_rate", "lc_win_rate_err"])
table

# %%
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(6, 4))
for name, curve in table.groupby("label"):
    curve = curve.sort_values("seed_fraction")
    ax.errorbar(curve["seed_fraction"] * 100, curve["win_rate"], yerr=curve["win_rate_err"].fillna(0),
                marker="o", capsize=3, label=name)
if table.empty:
    ax.text(0.5, 0.5, "no runs with a seed fraction", ha="center", va="center", transform=ax.transAxes)
else:
    ax.legend()
ax.set_xlabel("human-labelled seed data (%)")
ax.set_ylabel("AlpacaEval win rate (%)")
ax.set_title("Label efficiency")
fig.tight_layout()
fig.savefig(out / "label_efficiency.png", dpi=120)
plt.close(fig)

note = ("Mean over seeds; *_err: std error across seeds, or the run's own standard error with one seed "
        "(none for LC). Runs without a seed fraction are not shown.")
if table.empty:
    note = f"No runs with a seed fraction under {RUNS_DIR}. " + note
title = "Label efficiency: win rate vs seed fraction"
csv_path, md_path = write_table(table, out, "label_efficiency", title, note)
print(f"wrote {out / 'label_efficiency.png'}, {csv_path} and {md_path}")
