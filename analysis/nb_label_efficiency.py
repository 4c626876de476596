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
# Win rate against the share of human labels a run used, per model, data set, judge and method (or
# variant), mean over seeds; error bars are the std error across seeds, or the run's own SE with one
# seed. The share is the seed fraction (`seed_fraction` in run.json), except that SFT uses none (0) and
# DPO on all labels (`method.labels=all` in config.yaml; without it, variant `dpo_all` or a DPO run
# without a seed fraction) uses the whole labelled pool (1). Other runs without a seed fraction are
# left out, and so are outputs judged by `experiments.evaluate` (`outputs` in run.json). The y-axis
# names the judge the runs record (`annotator`, `judge_version` in metrics.json). Run directories with
# run.json or config.yaml but no metrics.json (failed, or still running) are listed, not dropped.
# Writes `OUT_DIR/label_efficiency.png`, `.md` and `.csv`. Run headless:
# `python analysis/nb_label_efficiency.py`.

# %% tags=["parameters"]
import os

RUNS_DIR = os.environ.get("RUNS_DIR", "runs")
OUT_DIR = os.environ.get("OUT_DIR", "analysis/out")

# %%
import importlib.util
import json
import sys
from pathlib import Path

if importlib.util.find_spec("analysis") is None:  # run as a script from the repo root, not installed
    sys.path.insert(0, str(Path.cwd()))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import yaml

from analysis.runs import label, load_runs, mean_with_error, write_table

runs = load_runs(RUNS_DIR)
runs["label"] = label(runs) if len(runs) else pd.Series(dtype=str)


def _annotator(run_dir):
    """The judge's name from the run's metrics.json (load_runs does not keep it)."""
    return json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8")).get("annotator")


def _dpo_labels(run_dir):
    """`method.labels` from the run's config.yaml (seed / all), None without one."""
    f = Path(run_dir) / "config.yaml"
    return ((yaml.safe_load(f.read_text()) or {}).get("method") or {}).get("labels") if f.is_file() else None


def _judge(annotator, version):
    names = [x for x in (annotator, version) if isinstance(x, str) and x]
    if len(names) == 2 and names[1].startswith(names[0]):  # gold + gold-v2 -> gold-v2
        names = names[1:]
    return " ".join(names) or None


def _judged_elsewhere(run_dir):
    """Outputs made elsewhere and judged by experiments.evaluate (run.json names them): no method's run."""
    return bool(json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8")).get("outputs"))


def _label_share(row):
    """Share of the labelled pool used as human labels: SFT 0, DPO on all labels 1, else the seed fraction."""
    if _judged_elsewhere(row["run_dir"]):
        return None
    if row["method"] == "sft":
        return 0.0
    if row["method"] == "dpo":
        labels = _dpo_labels(row["run_dir"])
        if labels is None:  # no config.yaml: the preset's name, or no seed fraction at all
            labels = "all" if row["variant"] == "dpo_all" or pd.isna(row["seed_fraction"]) else "seed"
        if labels == "all":
            return 1.0
    return row["seed_fraction"]


if len(runs):
    runs["judge"] = [_judge(_annotator(d), v) for d, v in zip(runs["run_dir"], runs["judge_version"])]
    runs["label_share"] = runs.apply(_label_share, axis=1).astype(float)
else:
    runs["judge"], runs["label_share"] = pd.Series(dtype=object), pd.Series(dtype=float)
with_fraction = runs[runs["label_share"].notna()]


def unfinished_runs(runs_dir):
    """Run directories (run.json or config.yaml; not Hydra's hidden records) without a metrics.json."""
    root = Path(runs_dir)
    dirs = {p.parent for name in ("run.json", "config.yaml") for p in root.rglob(name)
            if not any(part.startswith(".") for part in p.relative_to(root).parts)}
    return sorted(d for d in dirs if not (d / "metrics.json").is_file())


def _describe(d):
    f = d / "run.json"
    info = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    what = ", ".join(f"{k} {info[k]}" for k in ("variant", "method", "model", "data", "seed_fraction", "seed")
                     if info.get(k) is not None)
    return f"- `{d.relative_to(RUNS_DIR)}`" + (f" ({what})" if what else " (no run.json)")


unfinished = unfinished_runs(RUNS_DIR)
print(f"{len(runs)} runs, {len(with_fraction)} on the label-share axis, {len(unfinished)} without metrics.json, "
      f"under {Path(RUNS_DIR).resolve()}")

# %%
KEYS = ["model", "data", "judge", "label", "method", "seed_fraction"]
rows = []
for key, group in with_fraction.groupby(["model", "data", "judge", "label", "method", "label_share"],
                                        sort=True, dropna=False):
    wr, wr_err = mean_with_error(group, "win_rate")
    lc, lc_err = mean_with_error(group, "lc_win_rate", None)
    rows.append({**dict(zip(KEYS, key)), "n_seeds": int(group["win_rate"].notna().sum()), "win_rate": wr,
                 "win_rate_err": wr_err, "lc_win_rate": lc, "lc_win_rate_err": lc_err})
table = pd.DataFrame(rows, columns=KEYS + ["n_seeds", "win_rate", "win_rate_err", "lc_win_rate",
                                           "lc_win_rate_err"])
table

# %%
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(6, 4))
several = table[["model", "data"]].drop_duplicates().shape[0] > 1
for (model, data, judge, name), curve in table.groupby(["model", "data", "judge", "label"], dropna=False):
    curve = curve.sort_values("seed_fraction")
    tag = f"{name} ({model}, {data})" if several else name
    ax.errorbar(curve["seed_fraction"] * 100, curve["win_rate"], yerr=curve["win_rate_err"].fillna(0),
                marker="o", capsize=3, label=tag)
if table.empty:
    ax.text(0.5, 0.5, "no runs with a seed fraction", ha="center", va="center", transform=ax.transAxes)
else:
    ax.legend()
judges = sorted(set(table["judge"].dropna()))
judge_text = ", ".join(judges) if judges else "not recorded"
if table["judge"].isna().any() and judges:
    judge_text += ", not recorded"
ax.set_xlabel("human labels used (% of the labelled pool; SFT 0, DPO on all 100)")
ax.set_ylabel(f"win rate (%), judge: {judge_text}")
ax.set_title("Label efficiency")
fig.tight_layout()
fig.savefig(out / "label_efficiency.png", dpi=120)
plt.close(fig)

note = ("Mean over seeds; *_err: std error across seeds, or the run's own standard error with one seed "
        "(none for LC). seed_fraction: the share of human labels used (SFT 0, DPO on all labels 1). "
        f"Judge: {judge_text}. Other runs without a seed fraction, and outputs judged by experiments.evaluate, "
        "are not shown.")
if table.empty:
    note = f"No runs with a seed fraction under {RUNS_DIR}. " + note
if unfinished:
    note += (f"\n\nFailed or unfinished runs (run.json or config.yaml, no metrics.json), {len(unfinished)}:\n"
             + "\n".join(_describe(d) for d in unfinished))
title = "Label efficiency: win rate vs share of human labels"
csv_path, md_path = write_table(table, out, "label_efficiency", title, note)
print(f"wrote {out / 'label_efficiency.png'}, {csv_path} and {md_path}")
if unfinished:
    print(f"{len(unfinished)} failed or unfinished runs, listed in {md_path}")
