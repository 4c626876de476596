"""The critic-free RL trainers (methods/core/trainers/rl.py): GRPO and RLOO behind the suite's scorer interface.

The reward adapter against TRL 1.16's own reward call (directly, and through the trainer's
`_calculate_rewards`); both specs trained 2 steps on the tiny model through the shared stage with a
reward a random model's bytes show (their UTF-8 length); validation without a model; the configs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_trainers import FakeRun

# ---- helpers ------------------------------------------------------------------------------------


def _args(**kw):
    """CPU, tiny batches (2 completions a step: 1 prompt x 2 generations), 8 new tokens, no checkpoint."""
    return {"bf16": False, "gradient_checkpointing": False, "report_to": [], "save_strategy": "no",
            "disable_tqdm": True, "seed": 0, "logging_steps": 1, "per_device_train_batch_size": 2,
            "num_generations": 2, "max_completion_length": 8, "temperature": 1.0, **kw}


class SpyScorer:
    """A suite scorer (`score(items, outputs)`) recording every call; the reward is the output's UTF-8 length,
    which a random byte-level model's samples vary in."""

    name = "utf8_length"

    def __init__(self):
        self.calls = []

    def score(self, items, outputs):
        self.calls.append((list(items), list(outputs)))
        return [float(len(o.encode())) for o in outputs]


ROWS = [
    {"id": "a", "prompt": "Say hi.", "item": {"instruction": "Say hi.", "constraints": [{"kind": "x"}]}},
    {"id": "b", "prompt": [{"role": "user", "content": "Name a fruit."}], "item": {"instruction": "Name a fruit."}},
    {"id": "c", "prompt": "2+2?", "item": {"instruction": "2+2?", "answer": 4}},
    {"id": "d", "prompt": "Count to three.", "item": {"instruction": "Count to three.", "tags": ["n", "m"]}},
]


def _spec(kind, **args):
    from methods.core.trainers.rl import GRPOTrainerSpec, RLOOTrainerSpec

    return {"grpo": GRPOTrainerSpec, "rloo": RLOOTrainerSpec}[kind](args=_args(**args))


# ---- the reward adapter -------------------------------------------------------------------------


def test_completion_text_unwraps_conversational_completions():
    from methods.core.trainers.rl import completion_text

    assert completion_text("plain text") == "plain text"
    assert completion_text([{"role": "assistant", "content": "hello"}]) == "hello"
    assert completion_text([{"role": "assistant", "content": "call"}, {"role": "tool", "content": "42"},
                            {"role": "assistant", "content": "It is 42."}]) == "It is 42."
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                              {"type": "image"}, {"type": "text", "text": "b"}]}]) == "ab"
    assert completion_text([{"role": "assistant", "content": None, "tool_calls": []}]) == ""


def test_adapter_maps_trls_call_to_score_exactly():
    """TRL 1.16 calls reward_func(prompts=, completions=, completion_ids=, <dataset columns>..., trainer_state=,
    log_extra=, log_metric=) with one entry per completion (grpo_trainer.py:1584-1594, 1626): the scorer gets
    the completions' items (looked up by item_id, in order, repeated per generation) and their assistant texts."""
    from methods.core.trainers.rl import items_by_id, prompt_rows, reward_funcs_from_scorer

    spy = SpyScorer()
    (reward,) = reward_funcs_from_scorer(spy, items_by_id(ROWS))
    assert reward.__name__ == "utf8_length"  # TRL logs rewards/<__name__>/mean
    conv = prompt_rows(ROWS)
    order = [1, 1, 3, 3, 0, 0]  # two generations each of rows b, d, a
    texts = ["an apple", "pear", "one two three", "1, 2, 3", "hi", "héllo"]
    out = reward(prompts=[conv[k]["prompt"] for k in order],
                 completions=[[{"role": "assistant", "content": t}] for t in texts],
                 completion_ids=[[0]] * 6, item_id=[conv[k]["item_id"] for k in order],
                 trainer_state=object(), log_extra=lambda *a: None, log_metric=lambda *a: None)
    assert spy.calls == [([ROWS[k]["item"] for k in order], texts)]
    assert out == [8.0, 4.0, 13.0, 7.0, 2.0, 6.0]
    # plain-text prompts give string completions: passed through as they are
    reward(prompts=["x"], completions=["raw"], completion_ids=[[0]], item_id=["c"])
    assert spy.calls[-1] == ([ROWS[2]["item"]], ["raw"])
    with pytest.raises(KeyError, match="zz"):
        reward(prompts=["x"], completions=["raw"], item_id=["zz"])
    with pytest.raises(ValueError, match="item_id"):
        reward(prompts=["x"], completions=["raw"])


def test_adapter_through_trls_reward_call_site(tiny, tmp_path, one_thread):
    """TRL's own `_calculate_rewards` (what a training step calls) on the tiny model's trainer: the rewards it
    returns are the scorer's, for the items named by the rows' item_id column."""
    from methods.core.trainers.rl import items_by_id, reward_funcs_from_scorer

    src = tiny[0]
    run = FakeRun(tmp_path / "run", src)
    for kind in ("grpo", "rloo"):
        spec, spy = _spec(kind), SpyScorer()
        model, tok = spec.load(run, run.base_model_path)
        args = spec.training_args(tmp_path / kind)
        dataset, report = spec.dataset(tok, ROWS, args, "rl")
        assert dataset.column_names == ["prompt", "item_id"] and report["n_prompts"] == 4
        trainer = spec.trainer(model, tok, dataset, args, reward_funcs=reward_funcs_from_scorer(spy, items_by_id(ROWS)))
        inputs = [dataset[k] for k in (2, 2, 0, 0)]
        completions = [[{"role": "assistant", "content": t}] for t in ("four", "4", "hi there", "")]
        rewards = trainer._calculate_rewards(inputs, [x["prompt"] for x in inputs], completions, [[1]] * 4)
        assert rewards.shape == (4, 1) and rewards[:, 0].tolist() == [4.0, 1.0, 8.0, 0.0]
        assert spy.calls == [([ROWS[2]["item"]] * 2 + [ROWS[0]["item"]] * 2, ["four", "4", "hi there", ""])]


# ---- GRPO and RLOO through the stage ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_spec_trains_through_the_stage(tiny, tmp_path, one_thread, kind):
    """2 steps (1 prompt x 2 sampled completions each, 8 new tokens, beta 0.04: a reference model too) at
    lr 1e-3: the scorer saw each step's completions with their prompt's item (one item per group), the
    rewards varied within a group (so there was a gradient), and the saved policy differs from the init."""
    from methods.core.trainers.rl import ID_COLUMN

    src = tiny[0]
    run = FakeRun(tmp_path / "run", src)
    spec, spy = _spec(kind, max_steps=2, learning_rate=1e-3, beta=0.04), SpyScorer()
    spec.validate()
    out = Path(spec.train(run, ROWS, "rl", scorer=spy))

    assert out == run.dir / "rl" / "policy" and (out / "config.json").is_file() and run.released == 1
    assert not (run.dir / "rl" / "checkpoints").exists()
    metrics = json.loads((run.dir / "rl" / "train_metrics.json").read_text())
    assert metrics["trainer"] == kind and metrics["n_prompts"] == 4 and metrics["log"][-1]["step"] == 2
    assert len(spy.calls) == 2  # one generation batch a step
    for items, texts in spy.calls:
        assert len(items) == len(texts) == 2 and items[0] == items[1] and items[0] in [r["item"] for r in ROWS]
    assert any(len(set(map(len, (t.encode() for t in texts)))) > 1 for _, texts in spy.calls), spy.calls
    assert "utf8_length" in json.dumps(metrics["log"]) and ID_COLUMN not in metrics

    init, _ = src.load(run.base_model_path, for_generation=False)
    trained, _ = src.load(str(out), for_generation=False)
    a, b = init.state_dict(), trained.state_dict()
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) > 1e-5


def test_train_needs_a_scorer_and_items(tiny, tmp_path):
    run = FakeRun(tmp_path / "run", tiny[0])
    spec = _spec("grpo")
    with pytest.raises(ValueError, match="scorer"):
        spec.train(run, ROWS, "rl")
    with pytest.raises(ValueError, match=r"row 'x'.*item"):
        spec.train(run, [{"id": "x", "prompt": "hi"}], "rl", scorer=SpyScorer())
    with pytest.raises(ValueError, match="two different items"):
        spec.train(run, [ROWS[0], {**ROWS[1], "id": "a"}], "rl", scorer=SpyScorer())
    with pytest.raises(ValueError, match="reward_weights"):
        _spec("grpo", reward_weights=[1.0, 2.0]).train(run, ROWS, "rl", scorer=SpyScorer())
    assert not (run.dir / "rl").exists()  # refused before the stage ran


# ---- validation and configs ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
@pytest.mark.parametrize("field,value", [("learning_rate", "abc"), ("num_generations", "4"), ("beta", "0.1x"),
                                         ("per_device_train_batch_size", "8")])
def test_validate_refuses_a_string_for_a_number(kind, field, value):
    spec = _spec(kind, **{field: value})
    with pytest.raises(ValueError, match=rf"args\.{field}=") as e:
        spec.validate("method.trainer")
    assert kind in str(e.value) and "must be a number" in str(e.value)


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_validate_refuses_what_cannot_run_here(kind):
    from trl.import_utils import is_vllm_available

    if not is_vllm_available():
        with pytest.raises(ValueError, match=r"args\.use_vllm=True: vllm is not installed"):
            _spec(kind, use_vllm=True).validate()
    with pytest.raises(ValueError, match=r"args\.remove_unused_columns=True .*item_id"):
        _spec(kind, remove_unused_columns=True).validate()
    with pytest.raises(ValueError, match=r"args\.num_generations=1: .*at least 2"):
        _spec(kind, num_generations=1, per_device_train_batch_size=1).validate()
    _spec(kind).validate()


@pytest.mark.parametrize("name", ["grpo", "rloo"])
def test_configs_instantiate_and_validate(name):
    """conf/trainer/<name>.yaml composes on its own (seed given), instantiates its spec and validates, with the
    CPU-friendly values it states."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(str(REPO / "conf" / "trainer"), version_base="1.3"):
        cfg = compose(name, overrides=["+seed=3"])
    with open_dict(cfg):
        OmegaConf.resolve(cfg)
        cfg.pop("seed")
    spec = instantiate(cfg, _convert_="none")
    assert type(spec).__name__ == {"grpo": "GRPOTrainerSpec", "rloo": "RLOOTrainerSpec"}[name]
    assert spec.name == name and spec.output_name == "policy" and spec.lora_config() is None
    spec.validate()
    args = spec.training_args("/dev/null")
    assert type(args).__name__ == {"grpo": "GRPOConfig", "rloo": "RLOOConfig"}[name]
    assert args.seed == 3 and args.bf16 is False and args.gradient_checkpointing is False and args.use_vllm is False
    assert (args.per_device_train_batch_size, args.num_generations, args.max_completion_length) == (8, 4, 64)
    assert (args.temperature, args.learning_rate, args.save_steps, args.logging_steps) == (0.7, 1e-6, 20, 1)
    assert args.beta == {"grpo": 0.04, "rloo": 0.05}[name] and args.remove_unused_columns is False
