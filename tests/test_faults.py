"""Runs that survive faults (tiny model): kills inside a checkpoint save and inside the final save,
corrupted stage files, a second copy of a command, stale locks, NaN in metrics.

Each faulty run is a subprocess whose fault is injected by a small wrapper script: it patches one
function to SIGKILL the process at a chosen point, then starts the suite's Hydra app. The re-run,
without the fault, must end with the same metrics and outputs as a run that was never interrupted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from methods.core.trainers.stage import last_complete_checkpoint
from methods.core.locks import Busy, hold

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model=tiny_llama", "method=dpo", "method.labels=all", "data.n_labelled=16", "data.seed_fraction=1.0",
    "data.n_unlabelled=[4]", "data.n_eval=4", "data.label_sampling.n=3", "data.label_sampling.max_new_tokens=32",
    "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge", "data.label_sampling.drop_unfinished=false",
    "eval.max_new_tokens=8", "trainers.policy.args.per_device_train_batch_size=2", "trainers.policy.args.max_length=1024",
    "trainers.policy.args.save_steps=1", "trainers.policy.args.num_train_epochs=2", "trainers.policy.args.disable_tqdm=true",
    "generation.progress=false", "threads=1",
]
FILES = ("metrics.json", "model_outputs.json", "annotations.json", "run.json")

# {patch} runs before the app: it replaces one function with one that SIGKILLs the process
WRAPPER = """
import os, signal, sys
sys.argv = ["experiments.run", *{args!r}]
{patch}
from experiments.run import main
main()
"""
KILL_IN_CHECKPOINT_SAVE = """
import transformers
_orig = transformers.Trainer._save_optimizer_and_scheduler
calls = {"n": 0}
def _killing(self, output_dir):
    calls["n"] += 1
    if calls["n"] == 2:  # the second checkpoint: weights written, optimizer and state not yet
        os.kill(os.getpid(), signal.SIGKILL)
    return _orig(self, output_dir)
transformers.Trainer._save_optimizer_and_scheduler = _killing
"""
KILL_IN_FINAL_SAVE = """
import transformers
_orig = transformers.PreTrainedModel.save_pretrained
def _killing(self, save_directory, *a, **k):
    out = _orig(self, save_directory, *a, **k)
    if str(save_directory).endswith("policy.partial"):
        os.kill(os.getpid(), signal.SIGKILL)
    return out
transformers.PreTrainedModel.save_pretrained = _killing
"""


def _args(tmp_path: Path, run_dir: Path) -> list[str]:
    return [*TINY, f"run_dir={run_dir}", f"paths.cache={tmp_path}/cache"]


def _run(tmp_path: Path, run_dir: Path, patch: str = "", check: bool = True) -> subprocess.CompletedProcess:
    script = WRAPPER.format(args=_args(tmp_path, run_dir), patch=patch)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _results(run_dir: Path) -> dict:
    """The run's files; metrics.json less its wall time (no two runs share it), its other budgets kept."""
    from methods.core.budget import WALL_TIME_METRICS

    out = {name: json.loads((run_dir / name).read_text()) for name in FILES}
    assert out["metrics.json"]["budget_seconds"] > 0
    for key in WALL_TIME_METRICS:
        out["metrics.json"].pop(key)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    run_dir = tmp / "ref"
    _run(tmp, run_dir)
    from methods.core.provenance import code_version

    assert json.loads((run_dir / "run.json").read_text())["code"] == [code_version()]  # the code it ran
    return tmp, _results(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("where,patch", [("checkpoint save", KILL_IN_CHECKPOINT_SAVE),
                                         ("final save", KILL_IN_FINAL_SAVE)])
def test_killed_while_saving_then_rerun_gives_the_same_results(reference, where, patch):
    tmp, want = reference
    run_dir = tmp / where.replace(" ", "_")
    killed = _run(tmp, run_dir, patch, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (run_dir / "train" / "_done.json").exists()
    again = _run(tmp, run_dir)
    if where == "checkpoint save":
        log = again.stdout + again.stderr
        assert "is incomplete" in log and "resuming from" in log
    got = _results(run_dir)
    assert got["model_outputs.json"] == want["model_outputs.json"]
    assert got["annotations.json"] == want["annotations.json"]
    assert {k: v for k, v in got["metrics.json"].items()} == want["metrics.json"]


@pytest.mark.slow
def test_a_corrupted_stage_file_is_named_and_the_stage_redone(reference):
    tmp, want = reference
    run_dir = tmp / "ref"
    pairs = run_dir / "pairs" / "pairs.jsonl"
    lines = pairs.read_text().splitlines(True)
    pairs.write_text(lines[0])  # cut to one line
    again = _run(tmp, run_dir)
    log = again.stdout + again.stderr
    assert f"{pairs} has" in log and "run again" in log
    assert pairs.read_text() == "".join(lines)
    assert json.loads((run_dir / "metrics.json").read_text())["n_pairs"] == want["metrics.json"]["n_pairs"]
    assert list(run_dir.glob("pairs.stale-*"))  # the damaged copy is kept, not deleted


@pytest.mark.slow
def test_a_second_copy_is_refused_naming_the_first(reference):
    tmp, _ = reference
    run_dir = tmp / "busy"
    with hold(run_dir):
        out = _run(tmp, run_dir, check=False)
    assert out.returncode != 0
    assert f"is in use by process {os.getpid()}" in out.stdout + out.stderr
    assert not (run_dir / "pairs").exists()


def test_a_stale_lock_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename, "since": "x"}))
    with hold(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()
    with hold(tmp_path):
        with pytest.raises(Busy, match=f"process {os.getpid()}"):
            with hold(tmp_path):
                pass


def test_half_written_checkpoints_are_skipped(tmp_path):
    def ckpt(step, files):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        for f in files:
            (d / f).write_text(json.dumps({"global_step": step}) if f.endswith(".json") else "x")
    full = ["trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors"]
    ckpt(2, full)
    ckpt(4, full[1:])  # killed before trainer_state.json
    ckpt(6, ["model.safetensors"])
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert last_complete_checkpoint(tmp_path / "none") is None


def test_metrics_never_hold_bare_nan(tmp_path):
    from methods.core.io import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"lc_win_rate": float("nan"), "xs": [1.0, float("inf")]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"lc_win_rate": None, "xs": [1.0, None]}


def test_written_files_honour_the_umask(tmp_path):
    from methods.core.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


SFT = ["model=tiny_llama", "method=sft", "data.n_eval=2", "eval.max_new_tokens=4", "generation.progress=false",
       "threads=1"]


def _app(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.run", *SFT, f"paths.cache={tmp_path}/cache",
                           f"paths.runs={tmp_path}/runs", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_hydra_run_dir_moves_the_whole_run_and_a_refused_run_overwrites_nothing(tmp_path):
    out = _app(tmp_path, f"hydra.run.dir={tmp_path}/here")
    assert out.returncode == 0, out.stderr[-2000:]
    here = tmp_path / "here"
    for f in ("metrics.json", "annotations.json", "config.yaml", "run.json", "eval/_done.json"):
        assert (here / f).is_file(), f
    assert not (tmp_path / "runs").exists()  # nothing went to the default place
    before = {p: p.read_bytes() for p in here.rglob("*") if p.is_file() and p.name != "run.log"}
    refused = _app(tmp_path, f"hydra.run.dir={tmp_path}/here", "eval.max_new_tokens=5")  # another config
    assert refused.returncode != 0 and "another config" in refused.stderr
    after = {p: p.read_bytes() for p in before}
    assert after == before  # config.yaml, metrics and the first attempt's .hydra/ untouched
    assert len(list((here / ".hydra").iterdir())) == 2  # the refused attempt's record is its own


@pytest.mark.slow
@pytest.mark.parametrize("delay", [3.0, 7.5])
def test_sigkill_at_a_random_moment_then_rerun_gives_the_same_results(reference, delay):
    """SIGKILL after `delay` seconds (two points spread over the ~15 s of sampling, training and saving)."""
    import signal
    import time

    tmp, want = reference
    run_dir = tmp / f"killed_{delay}"
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER.format(args=_args(tmp, run_dir), patch="")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _run(tmp, run_dir)
    got = _results(run_dir)
    assert got == want


SIGTERM_AT_STEP_2 = """
import transformers
_orig = transformers.Trainer.training_step
calls = {"n": 0}
def _term(self, *a, **k):
    calls["n"] += 1
    if calls["n"] == 2:
        os.kill(os.getpid(), signal.SIGTERM)  # as SLURM pre-emption does, in the middle of a step
    return _orig(self, *a, **k)
transformers.Trainer.training_step = _term
"""


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_from_it(reference):
    tmp, want = reference
    run_dir = tmp / "sigterm"
    stopped = _run(tmp, run_dir, SIGTERM_AT_STEP_2, check=False)
    assert stopped.returncode != 0 and "stopped by SIGTERM after saving a checkpoint" in stopped.stderr
    assert (run_dir / "train" / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    again = _run(tmp, run_dir)
    assert "checkpoint-2" in again.stdout + again.stderr
    assert _results(run_dir) == want


def test_run_directory_names_stay_short_and_flat():
    from experiments.run import MAX_SUBDIR, run_subdir

    assert run_subdir("") == "default"
    assert run_subdir("model.local_path=/models/zephyr") == "model.local_path=_models_zephyr"
    long = ",".join(f"data.key{k}=value{k}" for k in range(30))
    name = run_subdir(long)
    assert len(name) <= MAX_SUBDIR and "/" not in name and name == run_subdir(long)
    assert name != run_subdir(long + ",seed=1")
