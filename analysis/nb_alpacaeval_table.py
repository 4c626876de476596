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
# # AlpacaEval table
#
# One row per experiment / method / variant / seed fraction (mean over seeds), and one per iteration
# where a run reports per-iteration win rates; win rate ± error (std error across seeds, or the run's
# own SE with one seed), LC win rate, average length, and beside them the paper's numbers for the
# same method from `paper_results`: the paper the experiment is named after when that paper reports the
# method, else the method's first listed setting (ablations left out); empty when no paper reports
# the method on AlpacaEval (SER, PIT, Self-Refine: see paper_results/README.md).
# LC numbers name their model: `lc_mode` is how ours was fitted (no_difficulty, pooled_difficulty,
# official_difficulty); the papers' LC is AlpacaEval's official one, so `lc_comparable` is true only
# for our rows fitted with the official difficulty. Read a paper's LC beside ours only where it is.
# Writes `OUT_DIR/alpacaeval_table.md` and `.csv`. Run headless: `python analysis/nb_alpacaeval_table.py`.

# %% tags=["parameters"]
import os

RUNS_DIR = os.environ.get("RUNS_DIR", "runs")
OUT_DIR = os.environ.get("OUT_DIR", "analysis/out")

# %%
import importlib.util
import re
import sys
from pathlib import Path

if importlib.util.find_spec("analysis") is None:  # run as a script from the repo root, not installed
    sys.path.insert(0, str(Path.cwd()))

import pandas as pd

import paper_results
from analysis.runs import load_iterations, load_runs, mean_with_error, write_table

METHOD_ORDER = ["sft", "dpo", "dpo_all", "spa", "sso", "ser", "pit", "self_refine"]
# runs are averaged as seeds only when everything but the seed matches (config_id, from config.yaml)
KEYS = ["experiment", "method", "variant", "model", "data", "seed_fraction", "config_id"]

runs = load_runs(RUNS_DIR)
iterations = load_iterations(RUNS_DIR)
print(f"{len(runs)} runs, {len(iterations)} iteration records under {Path(RUNS_DIR).resolve()}")

# %%
papers = paper_results.load()
alpacaeval = papers["metric"].isin(["win_rate", "lc_win_rate"])
papers = papers[alpacaeval & ~papers["setting"].str.contains("ablation:")]


def paper_numbers(method: str, experiment) -> dict:
    """The paper's AlpacaEval figures for `method`: from the paper the experiment names, if it has any."""
    rows = papers[papers["method"] == method]
    tokens = set(re.split(r"[^a-z0-9]+", str(experiment or "").lower())) | {str(experiment or "").lower()}
    named = [stem for stem in paper_results.files() if stem in tokens]
    if named:
        own = rows[rows["paper"].isin(paper_results.load(named[0])["paper"])]
        rows = own if len(own) else rows
    if rows.empty:
        return {}
    first = rows[rows["setting"] == rows["setting"].iloc[0]]
    values = dict(zip(first["metric"], first["value"]))
    return {"paper": first["paper"].iloc[0], "paper_setting": first["setting"].iloc[0],
            "paper_win_rate": values.get("win_rate"), "paper_lc_win_rate": values.get("lc_win_rate"),
            "paper_secondary": bool(first["secondary"].any())}


def summary_row(keys, group, iteration=None) -> dict:
    wr, wr_err = mean_with_error(group, "win_rate")
    lc, _ = mean_with_error(group, "lc_win_rate", None)
    modes = sorted(set(group["lc_mode"].dropna())) if "lc_mode" in group else []
    return {**dict(zip(KEYS, keys)), "iteration": iteration, "n_seeds": int(group["win_rate"].notna().sum()),
            "win_rate": wr, "win_rate_err": wr_err, "lc_win_rate": lc, "lc_mode": "/".join(modes) or None,
            "avg_length": group["avg_length"].mean() if "avg_length" in group else float("nan")}


rows = []
for keys, group in runs.groupby(KEYS, dropna=False, sort=False):
    rows.append({**summary_row(keys, group), **paper_numbers(keys[1], keys[0])})
with_wr = iterations[iterations["win_rate"].notna()] if len(iterations) else iterations
for keys, group in (with_wr.groupby(KEYS + ["iteration"], dropna=False, sort=False) if len(with_wr) else []):
    rows.append(summary_row(keys[:-1], group, int(keys[-1])))

columns = KEYS + ["iteration", "n_seeds", "win_rate", "win_rate_err", "lc_win_rate", "lc_mode", "avg_length",
                  "paper", "paper_setting", "paper_win_rate", "paper_lc_win_rate", "paper_lc_mode", "lc_comparable",
                  "paper_secondary"]
table = pd.DataFrame(rows).reindex(columns=columns)
has_paper = table["paper_lc_win_rate"].notna()
table["paper_lc_mode"] = has_paper.map({True: "official_difficulty", False: None})
table["lc_comparable"] = [bool(mode == "official_difficulty") if paper else None
                          for mode, paper in zip(table["lc_mode"], has_paper)]
if len(table):
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    table["iteration"] = table["iteration"].astype("Int64")
    table = table.sort_values(
        ["experiment", "method", "variant", "model", "data", "seed_fraction", "iteration"],
        key=lambda s: s.map(order).fillna(len(order)) if s.name == "method" else s,
        na_position="last").reset_index(drop=True)
table.insert(table.columns.get_loc("win_rate_err") + 1, "win_rate ± err",
             [f"{w:.2f} ± {e:.2f}" if pd.notna(e) else (f"{w:.2f}" if pd.notna(w) else "")
              for w, e in zip(table["win_rate"], table["win_rate_err"])])
table

# %%
note = ("LC: lc_mode names the model of each LC number; lc_comparable = False means the paper's LC "
        "(official difficulty) and ours were not fitted the same way and must not be compared. "
        "win_rate_err: std error across seeds, or the run's own standard error with one seed. "
        "Iteration rows (iteration set) come from metrics.json `iterations`; the row without one is the "
        "final model. paper_secondary = True: the paper's figure was read from summaries, not the paper "
        "(see paper_results/README.md).")
if table.empty:
    note = f"No finished runs (run.json beside metrics.json) under {RUNS_DIR}. " + note
csv_path, md_path = write_table(table, OUT_DIR, "alpacaeval_table", "AlpacaEval 2.0 results", note)
print(f"wrote {csv_path} and {md_path}")
