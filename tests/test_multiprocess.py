"""Training under several processes through accelerate (data parallel, gloo on CPU).

- DPO and reward-model training of the tiny model on 4 fixed rows: 2 processes at per-device batch 2
  end with the weights and per-step losses of 1 process at batch 4 (every step sees the same 4 rows;
  only the order of the float reductions differs), see tests/dist_train.py.
- The whole pipeline under 2 processes: the stages that are not training (pairs, eval) run once on the
  main process, every file is written once, and training is shared (the global step count is that of
  one process at twice the batch).
- `accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.15 (several CPU
  processes need mpirun): the suite refuses it rather than train silently alone.
On CPU, accelerate's multi-process launcher is `--multi_gpu` (torchrun underneath; no GPU is needed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(cmd, timeout=600) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    return out


def _weights(d: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(d / "model.safetensors")


def _losses(stage: Path) -> list[float]:
    return [e["loss"] for e in json.loads((stage / "train_metrics.json").read_text())["log"] if "loss" in e]


@pytest.mark.slow
@pytest.mark.parametrize("kind,folder", [("dpo", "policy"), ("reward", "reward_model")])
def test_two_processes_train_as_one_with_twice_the_batch(kind, folder, tmp_path, cache_dir):
    script = str(REPO / "tests" / "dist_train.py")
    _run([sys.executable, script, kind, str(tmp_path / "one"), str(cache_dir), "4"])
    _run([*ACCELERATE, "--multi_gpu", "--num_processes", "2", "--main_process_port", "29517", script, kind,
          str(tmp_path / "two"), str(cache_dir), "2"])
    one, two = tmp_path / "one" / "train", tmp_path / "two" / "train"
    a, b = _weights(one / folder), _weights(two / folder)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert _losses(one) == pytest.approx(_losses(two), rel=1e-5) and len(_losses(one)) == 3
    assert not (two / "dataset").exists() and not (two / "checkpoints").exists()


@pytest.mark.slow
def test_ppo_runs_under_two_processes(tmp_path, cache_dir):
    """PPO data parallel: each process rolls out its own prompts; the main one alone writes updates.csv
    (one row per update, averaged over the processes) and the policy."""
    _run([*ACCELERATE, "--multi_gpu", "--num_processes", "2", "--main_process_port", "29519",
          str(REPO / "tests" / "dist_train.py"), "ppo", str(tmp_path / "two"), str(cache_dir), "2"])
    d = tmp_path / "two" / "train"
    assert (d / "policy" / "model.safetensors").exists()
    assert [line.split(",")[0] for line in (d / "updates.csv").read_text().splitlines()[1:]] == ["1", "2"]


TINY = [
    "model=tiny_llama", "method=dpo", "data.n_labelled=16", "data.seed_fraction=1.0", "data.n_eval=4",
    "data.label_sampling.n=3", "data.label_sampling.max_new_tokens=16",
    "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge", "data.label_sampling.drop_unfinished=false",
    "eval.max_new_tokens=8", "trainers.policy.args.max_length=1024", "trainers.policy.args.disable_tqdm=true",
    "trainers.policy.args.num_train_epochs=2", "generation.progress=false", "threads=1",
]


@pytest.mark.slow
def test_the_pipeline_under_two_processes(tmp_path):
    cache = f"paths.cache={tmp_path}/cache"
    _run([sys.executable, "-m", "experiments.run", *TINY, cache, f"run_dir={tmp_path}/one",
          "trainers.policy.args.per_device_train_batch_size=4"])
    out = _run([*ACCELERATE, "--multi_gpu", "--num_processes", "2", "--main_process_port", "29518",
                "-m", "experiments.run", *TINY, cache, f"run_dir={tmp_path}/two",
                "trainers.policy.args.per_device_train_batch_size=2"])
    log = out.stdout + out.stderr
    for stage in ("pairs", "eval"):
        assert log.count(f"stage {stage}: running") == 1, stage  # the main process alone
    assert log.count("win rate") == 1  # one summary, from the main process
    one, two = (json.loads((tmp_path / r / "train" / "train_metrics.json").read_text()) for r in ("one", "two"))
    assert one["log"][-1]["step"] == two["log"][-1]["step"]  # the batch was shared, not repeated per process
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["n_total"] == 4
    assert not (tmp_path / "two" / ".lock").exists()


def test_accelerate_cpu_flag_that_starts_one_process_is_refused(tmp_path):
    env = {**ENV, "ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    for k in ("RANK", "WORLD_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-m", "experiments.run", "model=tiny_llama", f"run_dir={tmp_path}/r",
                          f"paths.cache={tmp_path}/cache"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0 and "started a single process" in out.stderr
    assert not (tmp_path / "r" / "config.yaml").exists()
