"""The analysis notebooks on a fake runs directory: as plain scripts and executed as notebooks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {
    "nb_alpacaeval_table": ["alpacaeval_table.md", "alpacaeval_table.csv"],
    "nb_label_efficiency": ["label_efficiency.png", "label_efficiency.md", "label_efficiency.csv"],
    "nb_self_label_accuracy": ["self_label_accuracy.png", "self_label_accuracy.md", "self_label_accuracy.csv"],
    "nb_rl_updates": ["rl_updates.png", "rl_updates.md", "rl_updates.csv"],
}


def _run(root: Path, name: str, info: dict, metrics: dict) -> None:
    d = root / name
    d.mkdir(parents=True)
    base = {"method": None, "variant": None, "experiment": "demo", "model": "smollm2", "data": "ultrafeedback",
            "seed": 0, "seed_fraction": None}
    (d / "run.json").write_text(json.dumps({**base, **info}))
    base_m = {"win_rate": None, "standard_error": 1.5, "lc_win_rate": None, "avg_length": 300.0, "n_total": 8,
              "n_wins": 2, "n_draws": 1}
    (d / "metrics.json").write_text(json.dumps({**base_m, **metrics}))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """sft; dpo at 5% (seeds 0, 1) and 10%; spa with 3 iterations at 5% (seeds 0, 1); sso in its own experiment."""
    root = tmp_path_factory.mktemp("runs")
    _run(root, "demo/sft", {"method": "sft"}, {"win_rate": 10.0, "lc_win_rate": 12.0})
    _run(root, "demo/dpo_5_s0", {"method": "dpo", "seed_fraction": 0.05}, {"win_rate": 20.0, "lc_win_rate": 21.0})
    _run(root, "demo/dpo_5_s1", {"method": "dpo", "seed_fraction": 0.05, "seed": 1}, {"win_rate": 30.0, "lc_win_rate": 31.0})
    _run(root, "demo/dpo_10_s0", {"method": "dpo", "seed_fraction": 0.1}, {"win_rate": 35.0, "lc_win_rate": 36.0})
    for seed, acc0 in ((0, 0.60), (1, 0.70)):
        its = [{"iteration": i, "self_label_accuracy": acc0 + 0.05 * i, "win_rate": 40.0 + i + seed,
                "lc_win_rate": 41.0 + i, "standard_error": 2.0, "noisy_share": 0.1} for i in (1, 2, 3)]
        _run(root, f"spa/spa_5_s{seed}", {"method": "spa", "experiment": "spa", "seed_fraction": 0.05, "seed": seed},
             {"win_rate": 44.0 + 2 * seed, "lc_win_rate": 45.0, "iterations": its})
    _run(root, "sso/sso", {"method": "sso", "experiment": "sso"},
         {"win_rate": 50.0, "lc_win_rate": 52.0, "lc_mode": "official_difficulty"})
    # a PPO stage's per-update log: score 0.1 .. 0.7, KL 0, 0.5, ... (7 updates)
    (root / "rl/ppo/rl").mkdir(parents=True)
    lines = ["step,score,kl,entropy,clip_frac"] + [f"{k},{0.1 * k:.1f},{0.5 * (k - 1)},1.0,0.1" for k in range(1, 8)]
    (root / "rl/ppo/rl/updates.csv").write_text("\n".join(lines) + "\n")
    # a stage's own metrics.json (no run.json beside it) is not a run
    (root / "demo/sft/eval").mkdir()
    (root / "demo/sft/eval/metrics.json").write_text(json.dumps({"win_rate": 99.0}))
    return root


def _outputs(out: Path, name: str) -> dict[str, Path]:
    paths = {f: out / f for f in NOTEBOOKS[name]}
    missing = [f for f, p in paths.items() if not p.is_file() or p.stat().st_size == 0]
    assert not missing, f"{name} did not write {missing}"
    return paths


def _check(out: Path, name: str) -> None:
    import pandas as pd

    paths = _outputs(out, name)
    csv = pd.read_csv(next(p for f, p in paths.items() if f.endswith(".csv")))
    md = next(p for f, p in paths.items() if f.endswith(".md")).read_text()
    CHECKS[name](csv, md)


def _check_table(csv, md):
    # sft, dpo 5%, dpo 10%, spa 5% final, sso final + spa iterations 1..3
    assert len(csv) == 8
    dpo5 = csv[(csv["method"] == "dpo") & (csv["seed_fraction"] == 0.05)].iloc[0]
    assert dpo5["win_rate"] == pytest.approx(25.0) and dpo5["win_rate_err"] == pytest.approx(5.0) and dpo5["n_seeds"] == 2
    assert "25.00 ± 5.00" in md
    spa_final = csv[(csv["method"] == "spa") & csv["iteration"].isna()].iloc[0]
    assert spa_final["win_rate"] == pytest.approx(45.0) and spa_final["paper_lc_win_rate"] == pytest.approx(15.39)
    assert bool(spa_final["paper_secondary"])
    # no lc_mode recorded -> not comparable with the paper's (official) LC; sso's run was fitted the same way
    assert spa_final["paper_lc_mode"] == "official_difficulty" and not spa_final["lc_comparable"]
    assert sorted(csv.loc[csv["method"] == "spa", "iteration"].dropna()) == [1, 2, 3]
    sso = csv[csv["method"] == "sso"].iloc[0]
    assert sso["paper"] == "SSO" and sso["paper_win_rate"] == pytest.approx(28.3)
    assert sso["lc_mode"] == "official_difficulty" and sso["lc_comparable"]
    assert csv.loc[csv["method"] == "sft", "paper"].iloc[0] == "SPA (Selfie)"  # first listed sft row
    assert 99.0 not in set(csv["win_rate"])  # eval/metrics.json is not a run


def _check_label_efficiency(csv, md):
    assert len(csv) == 4  # sft at 0, dpo 5%, dpo 10%, spa 5%; sso has no seed fraction
    assert csv.loc[csv["label"] == "sft", "seed_fraction"].tolist() == [0.0]  # no human labels
    dpo = csv[csv["label"] == "dpo"].set_index("seed_fraction")
    assert dpo.loc[0.05, "win_rate"] == pytest.approx(25.0) and dpo.loc[0.05, "win_rate_err"] == pytest.approx(5.0)
    assert dpo.loc[0.1, "win_rate_err"] == pytest.approx(1.5)  # one seed: the run's own SE
    assert "| smollm2 | ultrafeedback |  | dpo | dpo | 0.10 | 1 | 35.00 | 1.50 |" in md  # no judge recorded


def _check_self_label_accuracy(csv, md):
    assert list(csv["iteration"]) == [1, 2, 3]
    assert set(csv["model"]) == {"smollm2"} and set(csv["data"]) == {"ultrafeedback"}
    assert csv["self_label_accuracy"].tolist() == pytest.approx([0.70, 0.75, 0.80])
    assert csv["self_label_accuracy_err"].tolist() == pytest.approx([0.05] * 3)
    assert (csv["n_seeds"] == 2).all() and "0.75" in md


def _check_rl_updates(csv, md):
    """Scores 0.1..0.7: first 0.1, last 0.7, mean of the first five 0.3, of the last five 0.5; KL max 3.0."""
    row = csv.iloc[0]
    assert row["run"] == "rl/ppo/rl" and row["updates"] == 7
    assert (row["first_score"], row["last_score"]) == pytest.approx((0.1, 0.7))
    assert (row["score_first5"], row["score_last5"], row["max_kl"]) == pytest.approx((0.3, 0.5, 3.0))
    assert "rl/ppo/rl" in md


CHECKS = {"nb_alpacaeval_table": _check_table, "nb_label_efficiency": _check_label_efficiency,
          "nb_self_label_accuracy": _check_self_label_accuracy, "nb_rl_updates": _check_rl_updates}


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_as_script(name, runs_dir, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "RUNS_DIR": str(runs_dir), "OUT_DIR": str(out), "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, f"analysis/{name}.py"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    _check(out, name)


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_executes(name, runs_dir, tmp_path, kernel_name, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    out = tmp_path / "out"
    monkeypatch.setenv("RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("OUT_DIR", str(out))
    nb = jupytext.read(REPO / "analysis" / f"{name}.py")
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), "no cell tagged parameters"
    NotebookClient(nb, timeout=120, kernel_name=kernel_name, resources={"metadata": {"path": str(REPO)}}).execute()
    _check(out, name)


def test_notebooks_without_runs(tmp_path):
    """An empty runs directory: every notebook still writes its files, saying there is nothing to show."""
    out = tmp_path / "out"
    env = {**os.environ, "RUNS_DIR": str(tmp_path / "none"), "OUT_DIR": str(out), "MPLBACKEND": "Agg"}
    for name in NOTEBOOKS:
        r = subprocess.run([sys.executable, f"analysis/{name}.py"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        _outputs(out, name)
    assert "no run reports" in (out / "self_label_accuracy.md").read_text()


def test_load_runs_and_iterations(runs_dir):
    from analysis.runs import load_iterations, load_runs

    runs = load_runs(runs_dir)
    assert len(runs) == 7 and set(runs["method"]) == {"sft", "dpo", "spa", "sso"}
    assert runs.loc[runs["method"] == "spa", "n_iterations"].tolist() == [3, 3]
    its = load_iterations(runs_dir)
    assert len(its) == 6 and {"iteration", "self_label_accuracy", "noisy_share", "seed"} <= set(its.columns)


def test_table_never_averages_runs_of_other_settings(tmp_path):
    """Two seed-0 runs that differ in model (and one pair differing only in seed): three rows, the
    seed pair averaged, the other model alone; model and data in every row."""
    root = tmp_path / "runs"
    for name, info, wr, cfg in (("a_s0", {"method": "dpo", "seed": 0}, 50.0, "model: {name: m1}\nseed: 0\n"),
                                ("a_s1", {"method": "dpo", "seed": 1}, 60.0, "model: {name: m1}\nseed: 1\n"),
                                ("b_s0", {"method": "dpo", "seed": 0, "model": "m2"}, 80.0, "model: {name: m2}\nseed: 0\n")):
        _run(root, name, info, {"win_rate": wr})
        (root / name / "config.yaml").write_text(cfg)
    out = tmp_path / "out"
    env = {**os.environ, "RUNS_DIR": str(root), "OUT_DIR": str(out), "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "analysis/nb_alpacaeval_table.py"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    import pandas as pd

    csv = pd.read_csv(out / "alpacaeval_table.csv")
    assert sorted(zip(csv["model"], csv["n_seeds"], csv["win_rate"])) == [("m2", 1, 80.0), ("smollm2", 2, 55.0)]
