"""A method is one module plus one config: a toy method, written into a temporary folder that is not
part of the suite, runs end to end on the tiny model with its own metric and its own trainer, and
nothing outside that folder changes.

The toy method (`toy_plugin.Toy`): SFT (the suite's `sft` trainer, which the toy's config declares
as `trainers.toy` through its own defaults) on the seed prompts' gold-chosen answers; it reports
`toy_rows` (a key no core file knows) and one iteration row with `toy_stage`. The run is the toy's own
variants preset (sft vs toy, also in the folder) so that leaderboard.csv is written; Hydra finds the toy's config through
`hydra.searchpath` and Python its module through PYTHONPATH.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

TOY_MODULE = '''
from dataclasses import dataclass
from typing import Any

from methods.core.contract import Iteration, MethodResult, Policy


@dataclass
class Toy:
    name: str = "toy"
    n_rows: int = 4
    trainer: Any = None

    def validate(self, run) -> None:
        if self.n_rows < 1:
            raise ValueError("method.n_rows: must be >= 1")
        self.trainer.validate("method.trainer")

    def __call__(self, run) -> MethodResult:
        from methods.core.pairs import labelled_pairs

        pairs = labelled_pairs(run, run.data.seed_items())[: self.n_rows]
        rows = [{"id": p["id"], "prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
        policy = self.trainer.train(run, rows, "toy_sft")
        return MethodResult(Policy(policy), {"toy_rows": len(rows)},
                            [Iteration("half", 0, {"toy_stage": "before"}, Policy(run.base_model_path)),
                             Iteration("done", 1, {"toy_stage": "after"}, None)])
'''

TOY_CONFIG = '''
defaults:
  - /trainer@_global_.trainers.toy: sft
  - _self_
_target_: toy_plugin.Toy
name: toy
n_rows: 4
trainer: ${trainers.toy}
'''

TOY_EXPERIMENT = '''
# @package _global_
experiment_name: toy_demo
variants:
  sft: [method=sft]
  toy: [method=toy, +trainers.toy.args.max_steps=2, trainers.toy.args.per_device_train_batch_size=2,
        trainers.toy.args.disable_tqdm=true]
'''

TINY = [
    "model=tiny_llama", "data.n_labelled=16", "data.seed_fraction=0.5", "data.n_eval=6",
    "data.label_sampling.n=3", "data.label_sampling.max_new_tokens=16", "eval.max_new_tokens=8",
    "data.labeller._target_=methods.judges.gold.ConstraintsOnlyJudge", "data.label_sampling.drop_unfinished=false",
    "generation.progress=false", "threads=1",
]


@pytest.mark.slow
def test_a_toy_method_in_its_own_folder_runs_end_to_end(tmp_path):
    plugin = tmp_path / "plugin"
    (plugin / "conf" / "method").mkdir(parents=True)
    (plugin / "conf" / "experiment").mkdir()
    (plugin / "conf" / "experiment" / "toy_demo.yaml").write_text(TOY_EXPERIMENT)
    (plugin / "toy_plugin.py").write_text(textwrap.dedent(TOY_MODULE))
    (plugin / "conf" / "method" / "toy.yaml").write_text(TOY_CONFIG)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "experiments.run", *TINY, f"hydra.searchpath=[file://{plugin / 'conf'}]", "experiment=toy_demo",
           f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    toy = board[board.variant == "toy"]
    assert list(toy.iteration) == ["0", "1", "final"]
    trained = json.loads((tmp_path / "run" / "toy" / "toy_sft" / "train_metrics.json").read_text())
    assert toy[toy.iteration == "final"].toy_rows.item() == trained["n_rows"] >= 1  # the toy's metric reached the table
    assert list(toy.toy_stage.iloc[:2]) == ["before", "after"]
    assert toy[toy.iteration == "0"].win_rate.item() == 50.0  # the base model's iteration: the baseline itself
    assert pd.isna(toy[toy.iteration == "1"].win_rate.item())  # an iteration without a policy is not evaluated
    assert (tmp_path / "run" / "toy" / "toy_sft" / "policy" / "config.json").exists()  # its own trainer ran
    assert (tmp_path / "run" / "toy" / "half_eval" / "annotations.json").exists()
    assert trained["trainer"] == "sft"
    assert subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                          text=True).stdout == before  # nothing in the suite changed


def test_a_method_cannot_write_the_pipelines_stages(tmp_path):
    from methods.core.run import Run

    run = Run({}, tmp_path, None, None, None, None, cache_dir=tmp_path / "cache")
    for name in ("eval", "iter1_eval", "references", "eval/x"):
        with pytest.raises(ValueError, match="pipeline"):
            run.stage(name, lambda d: None)
    assert run.stage("iter1_train", lambda d: None).name == "iter1_train"
