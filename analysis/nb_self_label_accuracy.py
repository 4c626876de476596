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
# # Self-label accuracy per iteration
#
# For runs whose metrics.json has `iterations`: the accuracy of the method's own preference labels
# (against the held-back human labels) at each iteration, per model, data set, method (or variant)
# and seed fraction, mean over seeds with the std error across seeds; the share of pairs judged noisy
# beside it where reported. Writes `OUT_DIR/self_label_accuracy.png`, `.md` and `.csv`; with no such
# runs, a table saying so. Run headless: `python analysis/nb_self_label_accuracy.py`.

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

from analysis.runs import label, load_iterations, mean_with_error, write_table

iterations = load_iterations(RUNS_DIR)
iterations["label"] = label(iterations) if len(iterations) else pd.Series(dtype=str)
scored = iterations[iterations["self_label_accuracy"].notna()] if len(iterations) else iterations
print(f"{len(iterations)} iteration records, {len(scored)} with a self-label accuracy, "
      f"under {Path(RUNS_DIR).resolve()}")

# %%
# model and data are kept: accuracies of different models or data sets are never averaged together
KEYS = ["model", "data", "label", "method", "seed_fraction", "iteration"]
COLUMNS = KEYS + ["n_seeds", "self_label_accuracy", "self_label_accuracy_err", "noisy_share"]
rows = []
if len(scored):
    for key, group in scored.groupby(KEYS, dropna=False, sort=True):
        acc, err = mean_with_error(group, "self_label_accuracy", None)
        rows.append({**dict(zip(KEYS, key)), "iteration": int(key[-1]), "n_seeds": len(group),
                     "self_label_accuracy": acc, "self_label_accuracy_err": err,
                     "noisy_share": group["noisy_share"].mean()})
table = pd.DataFrame(rows, columns=COLUMNS)
if table.empty:
    table = pd.DataFrame([{"label": "(none)", "method": "no run reports per-iteration self-label accuracy"}],
                         columns=COLUMNS)
table

# %%
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(6, 4))
curves = table[table["self_label_accuracy"].notna()]
several = curves[["model", "data"]].drop_duplicates().shape[0] > 1
for (model, data, name, fraction), curve in curves.groupby(["model", "data", "label", "seed_fraction"],
                                                          dropna=False):
    tag = name if pd.isna(fraction) else f"{name} (seed {fraction:.0%})"
    tag = f"{tag}, {model}, {data}" if several else tag
    ax.errorbar(curve["iteration"], curve["self_label_accuracy"],
                yerr=curve["self_label_accuracy_err"].fillna(0), marker="o", capsize=3, label=tag)
if curves.empty:
    ax.text(0.5, 0.5, "no run reports per-iteration self-label accuracy", ha="center", va="center",
            transform=ax.transAxes)
else:
    ax.legend()
    ax.set_xticks(sorted(curves["iteration"].unique()))
ax.set_xlabel("iteration")
ax.set_ylabel("self-label accuracy")
ax.set_title("Self-label accuracy per iteration")
fig.tight_layout()
fig.savefig(out / "self_label_accuracy.png", dpi=120)
plt.close(fig)

note = "Mean over seeds; *_err: std error across seeds (empty with one seed)."
if curves.empty:
    note = f"No run under {RUNS_DIR} has `iterations` with a self_label_accuracy."
csv_path, md_path = write_table(table, out, "self_label_accuracy", "Self-label accuracy per iteration", note)
print(f"wrote {out / 'self_label_accuracy.png'}, {csv_path} and {md_path}")
