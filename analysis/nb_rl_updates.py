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
# # PPO updates: reward, KL and the optimiser's health
#
# Every `updates.csv` the PPO trainer wrote under RUNS_DIR (one row per update: mean score of the
# rollouts, KL to the reference in nats per response, β, entropy, clip fraction, value loss, explained
# variance, response length, throughput). Plots score, KL, entropy and clip fraction per update for each
# run and tables the first and last updates with the mean of the first and last five. Writes
# `OUT_DIR/rl_updates.png`, `.md` and `.csv`. Run headless: `python analysis/nb_rl_updates.py`.

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

from analysis.runs import write_table

files = sorted(Path(RUNS_DIR).rglob("updates.csv"))
frames = []
for f in files:
    df = pd.read_csv(f)
    df.insert(0, "run", str(f.parent.relative_to(RUNS_DIR)))
    frames.append(df)
updates = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "step"])
print(f"{len(files)} updates.csv files, {len(updates)} updates, under {Path(RUNS_DIR).resolve()}")

# %%
PLOTTED = ["score", "kl", "entropy", "clip_frac"]
fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2))
for ax, key in zip(axes, PLOTTED):
    for run, df in updates.groupby("run"):
        if key in df:
            ax.plot(df["step"], df[key], marker="o", markersize=3, label=run)
    ax.set_xlabel("update")
    ax.set_ylabel(key)
if len(updates):
    axes[0].legend(fontsize=7)
fig.tight_layout()
Path(OUT_DIR).mkdir(parents=True, exist_ok=True)
fig.savefig(Path(OUT_DIR) / "rl_updates.png", dpi=100)

# %%
rows = []
for run, df in updates.groupby("run"):
    df = df.sort_values("step")
    rows.append({"run": run, "updates": len(df), "first_score": df["score"].iloc[0], "last_score": df["score"].iloc[-1],
                 "score_first5": df["score"].head(5).mean(), "score_last5": df["score"].tail(5).mean(),
                 "first_kl": df["kl"].iloc[0], "last_kl": df["kl"].iloc[-1], "max_kl": df["kl"].max(),
                 "last_entropy": df["entropy"].iloc[-1]})
table = pd.DataFrame(rows, columns=["run", "updates", "first_score", "last_score", "score_first5", "score_last5",
                                    "first_kl", "last_kl", "max_kl", "last_entropy"])
_, md = write_table(table.round(4), OUT_DIR, "rl_updates", "PPO updates: first and last",
                   "" if len(table) else "No updates.csv under RUNS_DIR.")
print(md.read_text())
