"""The reward and SFT trainers (methods/core/trainers/reward.py, sft.py).

The reward loss hook against hand-computed values and against TRL's own loss; a replaced hook is what
training runs; both specs trained for a few steps on the tiny model through the shared stage
(load -> train -> merge -> save), the saved models loading where the suite reads them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

# ---- helpers ------------------------------------------------------------------------------------


class FakeRun:
    """Just enough of `methods.core.run.Run` for `train_stage`."""

    def __init__(self, root: Path, source):
        self.dir, self.model_source, self.released = root, source, 0

    @property
    def base_model_path(self) -> str:
        return self.model_source.path()

    def release(self) -> None:
        self.released += 1

    def stage(self, name, fn, all_ranks=False):
        d = self.dir / name
        d.mkdir(parents=True, exist_ok=True)
        fn(d)
        return d


def _args(**kw):
    """CPU, a few steps, no checkpoint, no logging integrations."""
    return {"bf16": False, "gradient_checkpointing": False, "report_to": [], "save_strategy": "no",
            "disable_tqdm": True, "seed": 0, "logging_steps": 1, "per_device_train_batch_size": 2, **kw}


def _t(xs):
    return torch.tensor(xs, dtype=torch.float64)


def _reward_batch(rc, rr, margin=None):
    from methods.core.trainers.reward import RewardBatch

    return RewardBatch(_t(rc), _t(rr), None if margin is None else _t(margin), inputs={})


PAIRS = [
    {"id": "p0", "prompt": "Is the sky blue?", "chosen": "Yes, on a clear day.", "rejected": "zzz"},
    {"id": "p1", "prompt": "2+2?", "chosen": "4", "rejected": "five, I think, or maybe six"},
    {"id": "p2", "prompt": [{"role": "user", "content": "Name a fruit."}], "chosen": "An apple.", "rejected": "No."},
    {"id": "p3", "prompt": "Say hi.", "chosen": "Hi!", "rejected": "I will not."},
]


# ---- the reward loss hook -----------------------------------------------------------------------


def test_bradley_terry_loss_matches_hand_computation():
    """r_c = (2, 0.5, −1), r_r = (1, 1.5, −1): gaps r_c − r_r = (1, −1, 0), and −log σ(g) = log(1 + e^−g):
        g = 1 -> log(1 + e^−1) = 0.313262;  g = −1 -> log(1 + e) = 1.313262;  g = 0 -> log 2 = 0.693147.
    With margins m = (0.5, 0, 1): g − m = (0.5, −1, −1) -> (log(1 + e^−0.5) = 0.474077, 1.313262, 1.313262).
    """
    from methods.core.trainers.reward import PreferenceRewardTrainer

    loss = PreferenceRewardTrainer.reward_loss(None, _reward_batch([2.0, 0.5, -1.0], [1.0, 1.5, -1.0]))
    assert loss.tolist() == pytest.approx([math.log1p(math.exp(-1)), math.log1p(math.e), math.log(2)], rel=1e-12)
    assert loss.tolist() == pytest.approx([0.313262, 1.313262, 0.693147], abs=1e-6)
    loss = PreferenceRewardTrainer.reward_loss(None, _reward_batch([2.0, 0.5, -1.0], [1.0, 1.5, -1.0], [0.5, 0, 1]))
    assert loss.tolist() == pytest.approx([0.474077, 1.313262, 1.313262], abs=1e-6)


def _hinge_trainer():
    from methods.core.trainers.reward import PreferenceRewardTrainer

    class HingeRewardTrainer(PreferenceRewardTrainer):
        """SER's paper form: max(0, Δ − (r_c − r_r)), Δ = 1."""

        delta = 1.0

        def reward_loss(self, batch):
            return (self.delta - (batch.chosen_rewards - batch.rejected_rewards)).clamp(min=0)

    return HingeRewardTrainer


def test_hinge_hook_replaces_the_default():
    """Same gaps (1, −1, 0), Δ = 1: max(0, 1 − g) = (0, 2, 1), where Bradley–Terry gave (0.313, 1.313, 0.693)."""
    hinge = _hinge_trainer()
    stub = type("Stub", (), {"delta": 1.0})()
    loss = hinge.reward_loss(stub, _reward_batch([2.0, 0.5, -1.0], [1.0, 1.5, -1.0]))
    assert loss.tolist() == [0.0, 2.0, 1.0]


def _reward_setup(tiny, tmp_path, rows=PAIRS, **args):
    from methods.core.trainers.reward import RewardTrainerSpec

    src = tiny[0]
    run = FakeRun(tmp_path / "run", src)
    spec = RewardTrainerSpec(args=_args(**{"max_length": 128, **args}))
    model, tok = spec.load(run, run.base_model_path)
    targs = spec.training_args(tmp_path / "ckpt")
    dataset, report = spec.dataset(tok, rows, targs, "rm")
    return spec, run, model, tok, targs, dataset, report


def test_default_hook_equals_trl_loss_with_margin_and_centering(tiny, tmp_path, one_thread):
    """On a real collated batch (margins and TRL's center_rewards_coefficient on), the subclass's loss
    equals TRL 1.16's RewardTrainer.compute_loss, and so do its metrics."""
    from trl import RewardTrainer

    rows = [{**p, "margin": m} for p, m in zip(PAIRS, [0.5, 0.0, 1.0, 0.25])]
    spec, _, model, tok, targs, dataset, _ = _reward_setup(tiny, tmp_path, rows, center_rewards_coefficient=0.01,
                                                           per_device_train_batch_size=4)
    ours = spec.trainer(model, tok, dataset, targs)
    theirs = RewardTrainer(model=model, args=targs, train_dataset=dataset, processing_class=tok)
    batch = next(iter(theirs.get_train_dataloader()))
    assert batch["margin"].shape == (4,)
    a = theirs.compute_loss(model, dict(batch)).item()
    b = ours.compute_loss(model, dict(batch)).item()
    assert a == pytest.approx(b, rel=1e-6)
    for key in ("accuracy", "margin", "mean_reward", "min_reward", "max_reward"):
        assert ours._metrics["train"][key] == pytest.approx(theirs._metrics["train"][key], rel=1e-6)


def test_training_runs_the_hook(tiny, tmp_path, one_thread):
    """A hook returning 0·(r_c + r_r) (zero loss, zero gradient) is called once per step and, with zero
    gradients and no weight decay, AdamW leaves every weight as it was: training used the hook."""
    from methods.core.trainers.reward import PreferenceRewardTrainer

    class ZeroHook(PreferenceRewardTrainer):
        calls = 0

        def reward_loss(self, batch):
            type(self).calls += 1
            assert batch.chosen_rewards.shape == batch.rejected_rewards.shape == (2,)
            return 0.0 * (batch.chosen_rewards + batch.rejected_rewards)

    spec, _, model, tok, _, dataset, _ = _reward_setup(tiny, tmp_path)
    targs = spec.training_args(tmp_path / "ckpt", max_steps=2, learning_rate=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = spec.trainer(model, tok, dataset, targs, trainer_cls=ZeroHook)
    trainer.train()
    assert ZeroHook.calls == 2
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- RewardTrainerSpec through the stage --------------------------------------------------------


def _judge_scores(path, rows):
    from methods.judges.reward_model import RewardModelJudge

    judge = RewardModelJudge(name_or_path=str(path), batch_size=4)
    judge.validate()
    items = [{"instruction": r["prompt"]} for r in rows]
    return judge.score(items, [r["chosen"] for r in rows]), judge.score(items, [r["rejected"] for r in rows])


@pytest.mark.parametrize("lora", [None, {"r": 8, "lora_alpha": 32, "lora_dropout": 0.1}], ids=["full", "lora"])
def test_reward_spec_trains_through_the_stage(tiny, tmp_path, one_thread, lora):
    """3 steps (batch 2, lr 1e-3) on 4 pairs: the saved `reward_model/` is a one-label sequence classifier
    that RewardModelJudge loads; its rewards differ from the untrained (seeded) head's, and the pairs'
    chosen − rejected gap grew. With LoRA (task_type SEQ_CLS) the adapters are merged and the head trained."""
    from methods.core.trainers.reward import RewardTrainerSpec

    src = tiny[0]
    run = FakeRun(tmp_path / "run", src)
    spec = RewardTrainerSpec(args=_args(max_length=128, max_steps=3, learning_rate=1e-3, disable_dropout=False),
                             lora=lora)
    spec.validate()
    # the untrained classifier: the same seeded head the stage starts from
    model, tok = spec.load(run, run.base_model_path)
    model.save_pretrained(tmp_path / "untrained")
    tok.save_pretrained(tmp_path / "untrained")

    out = Path(spec.train(run, PAIRS, "rm"))
    assert out == run.dir / "rm" / "reward_model" and run.released == 1
    assert not (out / "adapter_config.json").exists() and not (run.dir / "rm" / "checkpoints").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config.get("num_labels", 1) == 1
    metrics = json.loads((run.dir / "rm" / "train_metrics.json").read_text())
    assert metrics["trainer"] == "reward" and metrics["n_pairs"] == 4 and metrics["n_rows"] == 4
    assert metrics["log"][-1]["step"] == 3 and "accuracy" in metrics["log"][0]

    c0, r0 = _judge_scores(tmp_path / "untrained", PAIRS)
    c1, r1 = _judge_scores(out, PAIRS)
    assert max(abs(a - b) for a, b in zip(c0 + r0, c1 + r1)) > 1e-3
    assert sum(c1) - sum(r1) > sum(c0) - sum(r0)  # the mean chosen − rejected gap grew


def test_reward_pairs_over_max_length_are_counted_and_all_dropped_is_refused(tiny, tmp_path):
    """TRL drops (does not truncate) a pair whose prompt + chosen or prompt + rejected is over max_length.
    Byte-level tokens, with the chat template's 1 + 4 + 1 (user header) + 2 (end of turn) + 11 (assistant
    header) + 2 (end of turn) = 21 tokens around prompt and response: the longer chats of p0..p3 are
    21 + 16 + 20 = 57, 21 + 4 + 27 = 52, 21 + 13 + 9 = 43 and 21 + 7 + 11 = 39 tokens. At 50, p0 and p1 are
    dropped (and TRL's own filter keeps the other two); at 38, all of them: refused."""
    from methods.core.trainers.dpo import conversational_rows
    from methods.core.trainers.reward import check_reward_lengths

    spec, _, model, tok, targs, dataset, report = _reward_setup(tiny, tmp_path, max_length=50)
    assert report == {"n_pairs_given": 4, "n_pairs_dropped": 2, "dropped_pair_ids": ["p0", "p1"], "n_pairs": 2,
                      "n_rows_dropped": 2}
    assert len(spec.trainer(model, tok, dataset, targs).train_dataset) == 2
    targs = type(targs)(**{**targs.to_dict(), "max_length": 38})
    with pytest.raises(ValueError, match=r"args\.max_length=38 .* shortest pair has 39 tokens"):
        check_reward_lengths(tok, PAIRS, conversational_rows(PAIRS), targs, "rm")


SER_TEMPLATE = "Question: {prompt}\n\nAnswer: {response}"


def test_reward_text_template_trains_on_what_the_judge_scores(tiny, tmp_path):
    """With `template`, TRL gets standard-format rows (the rendered prompt, the bare responses; a
    multi-turn chat prompt its transcript) and tokenises prompt + response + EOS; RewardModelJudge with the same
    template builds exactly those token ids for every chosen and rejected answer. Byte-level tokens:
    "Question: Is the sky blue?\n\nAnswer: " + "zzz" + EOS is 36 + 3 + 1 = 40 tokens; the longer texts of
    p0..p3 are 36 + 20 + 1 = 57, 24 + 27 + 1 = 52, 33 + 9 + 1 = 43 and 27 + 11 + 1 = 39 tokens, so at
    max_length 50 p0 and p1 are dropped and named."""
    from methods.core.trainers.reward import text_rows
    from methods.judges.reward_model import RewardModelJudge

    assert text_rows(PAIRS[2:3], SER_TEMPLATE) == [
        {"prompt": "Question: Name a fruit.\n\nAnswer: ", "chosen": "An apple.", "rejected": "No."}]
    dialogue = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Name a fruit."}]
    assert text_rows([{**PAIRS[2], "prompt": dialogue}], SER_TEMPLATE)[0]["prompt"] == (
        "Question: Human: Hi.\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAnswer: ")
    spec, _, model, tok, targs, dataset, report = _reward_setup(tiny, tmp_path, max_length=512)
    spec.template = SER_TEMPLATE
    spec.validate()
    dataset, report = spec.dataset(tok, PAIRS, targs, "rm")
    assert report["n_pairs_dropped"] == 0
    trained = spec.trainer(model, tok, dataset, targs).train_dataset
    judge = RewardModelJudge(name_or_path="unused", template=SER_TEMPLATE)
    judge.validate()
    for pair, row in zip(PAIRS, trained):
        item = {"instruction": pair["prompt"]}
        for key in ("chosen", "rejected"):
            text = judge._text(tok, item, pair[key])
            assert tok(text, add_special_tokens=True)["input_ids"] == row[f"{key}_ids"]
    assert len(trained[0]["rejected_ids"]) == 40
    targs = type(targs)(**{**targs.to_dict(), "max_length": 50})
    assert spec.dataset(tok, PAIRS, targs, "rm")[1]["dropped_pair_ids"] == ["p0", "p1"]


@pytest.mark.parametrize("bad", ["{response} then {prompt}", "Question: {prompt}", "Answer: {response}",
                                 "{prompt} {response}{response}"])
def test_reward_template_is_checked_before_training(bad):
    from methods.core.trainers.reward import RewardTrainerSpec
    from methods.judges.reward_model import RewardModelJudge

    with pytest.raises(ValueError, match=r"trainers\.reward\.template=.*ending with \{response\}"):
        RewardTrainerSpec(args=_args(), template=bad).validate("trainers.reward")
    with pytest.raises(ValueError, match=r"judge\.template"):
        RewardModelJudge(name_or_path="unused", template=bad).validate()


# ---- SFTTrainerSpec -----------------------------------------------------------------------------

SFT_ROW = {"prompt": "Say the fruit.", "completion": "banana split"}


def _completion_logp(model, tok, row) -> float:
    """Σ log p(completion tokens | prompt) under the chat template, as TRL splits prompt and completion."""
    from methods.core.trainers.sft import prompt_completion_rows, sft_token_lengths

    conv = prompt_completion_rows([row])
    (n_prompt, _), = sft_token_lengths(tok, conv)
    ids = torch.tensor([tok.apply_chat_template(conv[0]["prompt"] + conv[0]["completion"])["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    return float(logp[torch.arange(len(targets)), targets][n_prompt - 1:].sum())


def test_sft_spec_trains_the_completion_only(tiny, tmp_path, one_thread):
    """8 steps at lr 1e-2 on one repeated row: the saved policy's log p(completion | prompt) rises well
    above the initial model's. The batches TRL collated (recorded through `trainer_cls`) have label −100 at
    every prompt position and the token itself at every completion position (completion_only_loss=None), and
    the first step's loss is −log p(completion | prompt) / (completion tokens) under the initial model."""
    from trl import SFTTrainer

    from methods.core.trainers.sft import SFTTrainerSpec, prompt_completion_rows, sft_token_lengths

    batches = []

    class Recording(SFTTrainer):
        def compute_loss(self, model, inputs, *a, **kw):
            batches.append({k: v.clone() for k, v in inputs.items() if torch.is_tensor(v)})
            return super().compute_loss(model, inputs, *a, **kw)

    src, _, tok = tiny
    run = FakeRun(tmp_path / "run", src)
    rows = [{"id": f"r{k}", **SFT_ROW} for k in range(4)]
    spec = SFTTrainerSpec(args=_args(max_length=128, max_steps=8, learning_rate=1e-2))
    spec.validate()
    base, _ = src.load(run.base_model_path, for_generation=False)
    before = _completion_logp(base, tok, SFT_ROW)

    out = Path(spec.train(run, rows, "sft", trainer_cls=Recording))
    assert out == run.dir / "sft" / "policy"
    metrics = json.loads((run.dir / "sft" / "train_metrics.json").read_text())
    assert metrics["trainer"] == "sft" and metrics["n_rows"] == 4 and metrics["n_rows_truncated"] == 0
    assert metrics["log"][-1]["step"] == 8

    trained, _ = src.load(str(out), for_generation=False)
    after = _completion_logp(trained, tok, SFT_ROW)
    assert after > before + 5, (before, after)

    (n_prompt, n_full), = sft_token_lengths(tok, prompt_completion_rows([SFT_ROW]))
    assert len(batches) == 8
    b = batches[0]
    assert b["input_ids"].shape == (2, n_full)
    assert (b["labels"][:, :n_prompt] == -100).all()
    assert torch.equal(b["labels"][:, n_prompt:], b["input_ids"][:, n_prompt:])
    # step 1's loss (before any update) is the initial model's mean NLL over the completion's tokens alone
    assert metrics["log"][0]["loss"] == pytest.approx(-before / (n_full - n_prompt), rel=1e-3)


def test_sft_lengths_counted_and_all_dropped_is_refused(tiny, tmp_path):
    """Byte-level tokens: the prompt "<|im_start|>user\\nSay the fruit.<|im_end|>\\n<|im_start|>assistant\\n" is
    1 + 4 + 1 + 14 + 1 + 1 + 1 + 9 + 1 = 33 tokens, prompt + completion 33 + 12 + 1 + 1 = 47. At max_length 40 the row
    is truncated (kept: 7 completion tokens); at 33 its prompt fills max_length: every row dropped, refused."""
    from methods.core.trainers.sft import SFTTrainerSpec, prompt_completion_rows, sft_token_lengths

    tok = tiny[2]
    assert sft_token_lengths(tok, prompt_completion_rows([SFT_ROW])) == [(33, 47)]
    rows = [{"id": "a", **SFT_ROW}, {"id": "b", "prompt": "Hi", "completion": "ok"}]
    spec = SFTTrainerSpec(args=_args(max_length=40))
    _, report = spec.dataset(tok, rows, spec.training_args(tmp_path), "sft")
    assert report["n_rows_given"] == report["n_rows"] == 2 and report["n_rows_dropped"] == 0
    assert report["n_rows_truncated"] == 1 and report["truncated_row_ids"] == ["a"]
    spec = SFTTrainerSpec(args=_args(max_length=33))
    with pytest.raises(ValueError, match=r"args\.max_length=33\b"):
        spec.dataset(tok, rows[:1], spec.training_args(tmp_path), "sft")


# ---- validation and configs ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reward", "sft"])
def test_validate_refuses_a_string_for_a_number(kind):
    from methods.core.trainers.reward import RewardTrainerSpec
    from methods.core.trainers.sft import SFTTrainerSpec

    spec = {"reward": RewardTrainerSpec, "sft": SFTTrainerSpec}[kind](args=_args(learning_rate="abc"))
    with pytest.raises(ValueError, match=r"learning_rate") as e:
        spec.validate("method.trainer")
    assert kind in str(e.value)


@pytest.mark.parametrize("name", ["reward", "reward_lora", "sft"])
def test_configs_instantiate_and_validate(name):
    """conf/trainer/<name>.yaml composes on its own (seed given), instantiates its spec and validates."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(str(REPO / "conf" / "trainer"), version_base="1.3"):
        cfg = compose(name, overrides=["+seed=3"])  # the root config's seed, which args.seed refers to
    with open_dict(cfg):
        OmegaConf.resolve(cfg)
        cfg.pop("seed")
    spec = instantiate(cfg, _convert_="none")
    assert type(spec).__name__ == {"sft": "SFTTrainerSpec"}.get(name, "RewardTrainerSpec")
    spec.validate()
    args = spec.training_args("/dev/null")
    assert args.seed == 3 and args.bf16 is False and args.gradient_checkpointing is False
    lora = spec.lora_config()
    if name == "reward_lora":
        assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.task_type) == (8, 32, 0.1, "SEQ_CLS")
        assert args.disable_dropout is False
    else:
        assert lora is None
