"""The label-efficiency notebook's axes and lists on a runs tree shaped like the demo's variants.

The demo writes seed_fraction 0.1 into every variant's run.json, sft's and dpo_all's too; the plot must
put sft at 0 and DPO on all labels at 100%, name the judge the runs record on the y-axis, keep model
and data in its table, and list a sweep member that never wrote metrics.json.
"""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _member(root: Path, name: str, info: dict, labels: str | None = None, metrics: dict | None = None) -> None:
    d = root / name
    d.mkdir(parents=True)
    base = {"method": "dpo", "variant": None, "experiment": "demo", "model": "SmolLM2-135M-Instruct",
            "data": "ifeval_synth", "seed": 0, "seed_fraction": 0.1}
    info = {**base, **info}
    (d / "run.json").write_text(json.dumps(info))
    if labels is not None or info["method"] == "sft":
        method = {"name": info["method"], **({"labels": labels} if labels else {})}
        (d / "config.yaml").write_text(f"method: {json.dumps(method)}\nseed: {info['seed']}\n")
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps({"standard_error": 1.0, "lc_win_rate": 50.0, "annotator": "gold",
                                                    "judge_version": "gold-v2", **metrics}))


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    root = tmp_path / "runs"
    _member(root, "demo/default/sft", {"method": "sft", "variant": "sft"}, metrics={"win_rate": 50.0})
    _member(root, "demo/default/dpo_seed", {"variant": "dpo_seed"}, "seed", {"win_rate": 52.0})
    _member(root, "demo/default/dpo_all", {"variant": "dpo_all"}, "all", {"win_rate": 55.0})
    # a sweep without variants: DPO at two fractions, one member failed (config and run.json, no metrics)
    _member(root, "sweep/seed_fraction=0.5", {"seed_fraction": 0.5}, "seed", {"win_rate": 53.0})
    _member(root, "sweep/seed_fraction=0.2", {"seed_fraction": 0.2}, "seed")
    # no config.yaml and no seed fraction: DPO on all labels
    _member(root, "old/dpo_nofrac", {"seed_fraction": None, "variant": "all_labels"}, metrics={"win_rate": 56.0})
    # outputs judged by experiments.evaluate are no method's run
    _member(root, "evaluate/echo", {"method": "sft", "outputs": "/tmp/echo.json"}, metrics={"win_rate": 11.0})
    (root / "demo/default/.hydra").mkdir()
    (root / "demo/default/.hydra/config.yaml").write_text("method: {name: sft}\n")  # Hydra's record: no run
    return root


@pytest.fixture
def notebook(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    monkeypatch.chdir(REPO)
    return runpy.run_path(str(REPO / "analysis" / "nb_label_efficiency.py")), tmp_path / "out"


def test_the_y_axis_names_the_judge(notebook):
    ns, _ = notebook
    assert ns["ax"].get_ylabel() == "win rate (%), judge: gold-v2"


def test_sft_at_zero_and_dpo_on_all_labels_at_one(notebook):
    ns, out = notebook
    xs = {c.get_label(): list(c.lines[0].get_xdata()) for c in ns["ax"].containers}
    assert xs["sft"] == [0.0] and xs["dpo_all"] == [100.0] and xs["all_labels"] == [100.0]
    assert xs["dpo_seed"] == [pytest.approx(10.0)] and xs["dpo"] == [50.0]
    assert "echo" not in str(xs) and len(xs) == 5
    import pandas as pd

    csv = pd.read_csv(out / "label_efficiency.csv")
    share = dict(zip(csv["label"], csv["seed_fraction"]))
    assert share == {"sft": 0.0, "dpo_all": 1.0, "all_labels": 1.0, "dpo_seed": 0.1, "dpo": 0.5}
    assert set(csv["model"]) == {"SmolLM2-135M-Instruct"} and set(csv["data"]) == {"ifeval_synth"}
    assert set(csv["judge"]) == {"gold-v2"}


def test_a_failed_sweep_member_is_listed(notebook):
    ns, out = notebook
    md = (out / "label_efficiency.md").read_text()
    assert "Failed or unfinished runs (run.json or config.yaml, no metrics.json), 1:" in md
    assert "- `sweep/seed_fraction=0.2` (method dpo, model SmolLM2-135M-Instruct, data ifeval_synth, " \
           "seed_fraction 0.2, seed 0)" in md
    assert ".hydra" not in md
    assert "| SmolLM2-135M-Instruct | ifeval_synth | gold-v2 | dpo | dpo | 0.50 | 1 | 53.00 | 1.00 |" in md
