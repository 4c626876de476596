"""Every training stage writes train_curve.png beside train_metrics.json, and `train_loss_whole_run`
covers the whole run, also after a resume, where TRL's `train_loss` covers only the resumed steps.

Tiny DPO runs (test_faults' overrides) as subprocesses, every step logged (`logging_steps=1`), so the
step-weighted mean of the logged losses is their plain mean.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_faults import KILL_IN_CHECKPOINT_SAVE, TINY, WRAPPER

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _args(tmp_path: Path, run_dir: Path) -> list[str]:
    # no warm-up and a large learning rate: the loss moves off log 2 after the first step (policy =
    # reference there), so the mean over the resumed steps differs from the whole run's
    return [*TINY, "trainers.policy.args.logging_steps=1", "trainers.policy.args.learning_rate=0.01", "trainers.policy.args.warmup_steps=0",
            "trainers.policy.args.num_train_epochs=3", f"run_dir={run_dir}", f"paths.cache={tmp_path}/cache"]


def _run(tmp_path: Path, run_dir: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "experiments.run", *_args(tmp_path, run_dir)], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _train_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "train" / "train_metrics.json").read_text())


def _logged_losses(metrics: dict) -> dict[int, float]:
    losses = {}
    for e in metrics["log"]:
        if "loss" in e:
            assert e["step"] not in losses, f"step {e['step']} logged twice"
            losses[e["step"]] = e["loss"]
    return losses


def test_a_stage_writes_its_curve_and_whole_run_loss(tmp_path):
    run_dir = tmp_path / "run"
    _run(tmp_path, run_dir)
    png = run_dir / "train" / "train_curve.png"
    assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC
    assert png.name in json.loads((run_dir / "train" / "_done.json").read_text())["files"]
    m = _train_metrics(run_dir)
    losses = _logged_losses(m)
    assert sorted(losses) == list(range(1, m["log"][-1]["step"] + 1))  # every step, once
    assert any("rewards/margins" in e for e in m["log"])
    assert m["train_loss_whole_run"] == pytest.approx(statistics.fmean(losses.values()), rel=1e-9)
    assert m["train_loss_whole_run"] == pytest.approx(m["train_loss"], rel=1e-5)  # not resumed: the same


def test_after_a_resume_the_whole_run_loss_covers_every_step(tmp_path):
    run_dir = tmp_path / "resumed"
    script = WRAPPER.format(args=_args(tmp_path, run_dir), patch=KILL_IN_CHECKPOINT_SAVE)
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = _run(tmp_path, run_dir)
    assert "resuming from" in again.stdout + again.stderr
    m = _train_metrics(run_dir)
    losses = _logged_losses(m)
    last = m["log"][-1]["step"]
    assert sorted(losses) == list(range(1, last + 1))  # the restored history holds the earlier steps
    assert m["train_loss_whole_run"] == pytest.approx(statistics.fmean(losses.values()), rel=1e-9)
    # TRL's train_loss: only the steps after the checkpoint it resumed from (checkpoint-1)
    resumed = [v for s, v in losses.items() if s > 1]
    assert m["train_loss"] == pytest.approx(statistics.fmean(resumed), rel=1e-5)
    assert m["train_loss"] != pytest.approx(m["train_loss_whole_run"], rel=1e-6)
    png = run_dir / "train" / "train_curve.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
