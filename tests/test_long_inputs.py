"""Long inputs (tiny model: byte tokenizer, one token per character, a 4096-token context).

DPO: the pairs TRL 1.16 drops (prompt alone >= max_length) or truncates (prompt + response > max_length)
are counted, named and written to train_metrics.json, and the same counts come out of TRL's own dataset;
with every pair dropped the stage refuses before TRL. Generation: a prompt that cannot fit the context
with its new tokens is refused before anything is generated.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from methods.core.trainers.dpo import DPOTrainerSpec, check_pair_lengths, conversational_rows
from methods.core.run import Run

REPO = Path(__file__).resolve().parents[1]

MAX_LENGTH = 128
# prompt lengths in characters = tokens of the prompt text; the chat template adds ~30 tokens
PAIRS = [
    {"id": "short-a", "prompt": "Say hi.", "chosen": "Hi there!", "rejected": "no"},
    {"id": "short-b", "prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "rock"},
    {"id": "long-prompt", "prompt": "x" * 200, "chosen": "ok", "rejected": "no"},
    {"id": "long-answer", "prompt": "Tell a story.", "chosen": "once " * 40, "rejected": "no"},
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tiny, tmp_path, **args) -> tuple[Run, DPOTrainerSpec]:
    conf = OmegaConf.load(REPO / "conf" / "trainer" / "dpo.yaml")
    conf.args.merge_with({"max_length": MAX_LENGTH, "per_device_train_batch_size": 2, "save_steps": 100,
                          "logging_steps": 1, "disable_tqdm": True, "seed": 0, **args})
    spec = DPOTrainerSpec(name="dpo", args=OmegaConf.to_container(conf.args))
    cfg = OmegaConf.create({"seed": 0})
    return Run(cfg, tmp_path / "run", tiny[0], data=None, judge=None, method=None, cache_dir=tmp_path / "cache"), spec


def test_the_counts_match_what_trl_keeps(tiny, tmp_path):
    """Our prediction against TRL's own tokenised dataset: it keeps 3 of the 4 pairs, and exactly one
    kept pair (long-answer) has more than max_length tokens, which its collator cuts."""
    from datasets import Dataset

    from methods.core.trainers.dpo import PreferenceDPOTrainer

    model, tok = tiny[0].load(for_generation=False)  # a fresh copy, as the training stage loads it
    run, spec = _run(tiny, tmp_path, precompute_ref_log_probs=False)
    rows = conversational_rows(PAIRS)
    args = spec.training_args(tmp_path / "ckpt")
    report = check_pair_lengths(tok, PAIRS, rows, args, "train")
    assert report == {"n_pairs_given": 4, "n_pairs_dropped": 1, "n_pairs_truncated": 1,
                      "dropped_pair_ids": ["long-prompt"], "truncated_pair_ids": ["long-answer"]}
    trainer = PreferenceDPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    kept = trainer.train_dataset
    assert len(kept) == 4 - report["n_pairs_dropped"]
    too_long = [r for r in kept if len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) > MAX_LENGTH]
    assert len(too_long) == report["n_pairs_truncated"]


def test_dropped_and_truncated_pairs_are_logged_and_counted(tiny, tmp_path, caplog):
    run, spec = _run(tiny, tmp_path)
    with caplog.at_level(logging.WARNING, logger="methods.core.trainers.dpo"):
        policy = spec.train(run, PAIRS, "train")
    metrics = json.loads((run.dir / "train" / "train_metrics.json").read_text())
    assert (metrics["n_pairs_given"], metrics["n_pairs_dropped"], metrics["n_pairs_truncated"]) == (4, 1, 1)
    assert metrics["n_pairs"] == 3  # the pairs trained on, not the pairs given
    assert metrics["dropped_pair_ids"] == ["long-prompt"] and metrics["truncated_pair_ids"] == ["long-answer"]
    text = caplog.text
    assert "1 of 4 pairs dropped" in text and "long-prompt" in text
    assert "1 of 4 pairs truncated" in text and "long-answer" in text
    assert (run.dir / "train" / "_done.json").exists() and policy.endswith("policy")


def test_every_pair_dropped_is_refused_before_trl(tiny, tmp_path):
    pairs = [{"id": f"p{k}", "prompt": "y" * (150 + 10 * k), "chosen": "a", "rejected": "b"} for k in range(3)]
    run, spec = _run(tiny, tmp_path)
    with pytest.raises(ValueError) as e:
        spec.train(run, pairs, "seed_train")
    msg = str(e.value)
    assert "stage seed_train: all 3 preference pairs would be dropped" in msg
    assert "max_length=128" in msg and "'p2'" in msg  # the longest pair is named
    assert "torch.cat" not in msg
    assert not (run.dir / "seed_train" / "_done.json").exists()


def test_no_max_length_counts_nothing(tiny, tmp_path):
    run, spec = _run(tiny, tmp_path, max_length=None)
    args = spec.training_args(tmp_path / "ckpt")
    report = check_pair_lengths(tiny[2], PAIRS, conversational_rows(PAIRS), args, "train")
    assert report == {"n_pairs_given": 4, "n_pairs_dropped": 0, "n_pairs_truncated": 0}


def test_generation_refuses_a_prompt_past_the_context(tiny, monkeypatch):
    from methods.core.generation import HFEngine, SamplingParams

    _, model, tok = tiny
    engine = HFEngine(model, tok, batch_size=4, progress=False)
    ctx = engine.context_length()
    assert ctx == model.config.max_position_embeddings == 4096

    def never(**kwargs):
        raise AssertionError("generate was called for an over-long prompt")

    monkeypatch.setattr(model, "generate", never)
    prompts = ["hello", "z" * (2 * ctx), "z" * (ctx + 100)]
    with pytest.raises(ValueError) as e:
        engine.generate(prompts, SamplingParams(max_new_tokens=8))
    msg = str(e.value)
    assert "2 of 3 prompts" in msg and f"context length of {ctx} tokens" in msg
    n_tokens = len(engine.encode(prompts[1:2])[0])
    assert f"prompt 1 has {n_tokens} tokens" in msg and "max_new_tokens=8" in msg

    # the new tokens count too: a prompt that fits alone is refused when its completion would not
    fits = "z" * (ctx - 64)
    n_fit = len(engine.encode([fits])[0])
    assert n_fit < ctx
    with pytest.raises(ValueError, match=f"prompt 0 has {n_fit} tokens"):
        engine.generate([fits], SamplingParams(max_new_tokens=ctx - n_fit + 1))


def test_generation_within_the_context_runs(tiny):
    from methods.core.generation import HFEngine, SamplingParams

    _, model, tok = tiny
    engine = HFEngine(model, tok, batch_size=4, progress=False)
    out = engine.generate(["hello", "z" * 900], SamplingParams(max_new_tokens=4))
    assert len(out) == 2 and all(len(o) == 1 for o in out)
