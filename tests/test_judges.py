"""Judges behind one interface: the local `llm` judge and a `reward_model` on tiny models built in
code, the `alpaca_eval` judge's fail-fast validation, and the judge-agreement figures."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

ITEMS = [{"id": str(k), "instruction": ins} for k, ins in enumerate(
    ["Name a colour.", "Write a haiku about rain.", [{"role": "user", "content": "hi"},
                                                    {"role": "assistant", "content": "hello"},
                                                    {"role": "user", "content": "Say bye."}]])]
OUT_1 = ["Blue.", "Rain taps the window / ...", "Bye!"]
OUT_2 = ["A colour is red, a warm and bright one.", "", "Goodbye, see you soon."]


@pytest.fixture(scope="module")
def llm_judge(tmp_path_factory):
    from methods.core.models import TinyLlama
    from methods.judges.llm import LLMJudge

    src = TinyLlama(cache_dir=str(tmp_path_factory.mktemp("cache") / "models"))
    judge = LLMJudge(model=src, batch_size=4, max_output_tokens=64, max_instruction_tokens=64)
    judge.validate()
    return judge


def test_llm_judge_averages_both_orders(llm_judge):
    fwd, bwd = llm_judge.compare_orders(ITEMS, OUT_1, OUT_2)
    prefs = llm_judge.compare(ITEMS, OUT_1, OUT_2)
    assert all(1 <= p <= 2 for p in fwd + bwd + prefs)
    assert prefs == pytest.approx([(f + b) / 2 for f, b in zip(fwd, bwd)])
    # swapping the outputs swaps the two orders: the preference mirrors exactly around 1.5
    assert llm_judge.compare(ITEMS, OUT_2, OUT_1) == pytest.approx([3 - p for p in prefs], abs=1e-6)
    # the one-order figures come from the model (a random model has a position bias, not 1.5 exactly)
    assert any(abs(f - 1.5) > 1e-4 for f in fwd)


def test_llm_judge_batched_equals_unbatched(llm_judge):
    seqs = [llm_judge.encode(it, a, b) for it, a, b in zip(ITEMS, OUT_1, OUT_2)]
    assert len({len(s) for s in seqs}) > 1  # left padding is exercised
    assert llm_judge.p_second(seqs, batch_size=3) == pytest.approx(llm_judge.p_second(seqs, batch_size=1), abs=1e-5)


def test_llm_judge_prompt_is_filled_once(llm_judge):
    from methods.judges.llm import instruction_text

    _, tok, _, _ = llm_judge._load()
    text = tok.decode(llm_judge.encode({"instruction": "Q {output_2}"}, "first", "second"))
    assert "Q {output_2}" in text and text.index("first") < text.index("second")
    assert instruction_text(ITEMS[2]["instruction"]) == "Human: hi\n\nAssistant: hello\n\nHuman: Say bye."


def test_llm_judge_validation():
    from methods.judges.llm import LLMJudge

    with pytest.raises(ValueError, match="judge.model"):
        LLMJudge().validate()
    with pytest.raises(ValueError, match="prompt_file"):
        LLMJudge(model_path="x", prompt_file="nope.txt").validate()
    with pytest.raises(ValueError, match="labels"):
        LLMJudge(model_path="x", labels=["m", "m"]).validate()


# ---- reward model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    import torch
    import transformers

    from methods.core.models import byte_tokenizer

    tok = byte_tokenizer()
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                                   pad_token_id=tok.pad_token_id, max_position_embeddings=512)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("rm")
    transformers.LlamaForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def test_reward_model_judge(reward_dir):
    from methods.judges.reward_model import RewardModelJudge

    judge = RewardModelJudge(name_or_path=reward_dir, batch_size=8)
    judge.validate()
    s1, s2 = judge.score(ITEMS, OUT_1), judge.score(ITEMS, OUT_2)
    assert len({round(s, 6) for s in s1 + s2}) > 1
    single = RewardModelJudge(name_or_path=reward_dir, batch_size=1)
    assert single.score(ITEMS, OUT_2) == pytest.approx(s2, abs=1e-5)  # left padding does not change a score
    import math

    prefs = judge.compare(ITEMS, OUT_1, OUT_2)
    assert prefs == pytest.approx([1 + 1 / (1 + math.exp(a - b)) for a, b in zip(s1, s2)])
    hard = RewardModelJudge(name_or_path=reward_dir, preference="hard").compare(ITEMS, OUT_1, OUT_2)
    assert hard == [1.0 if a > b else 2.0 for a, b in zip(s1, s2)]
    with pytest.raises(ValueError, match="preference"):
        RewardModelJudge(name_or_path=reward_dir, preference="soft").validate()


# ---- alpaca_eval -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reward_dir_no_pad(tmp_path_factory, reward_dir):
    """The tiny reward model with a tokenizer that has no pad token and a chat template whose texts
    end with eos (<|im_end|>): the judge must pad with eos yet read each row's true last token."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(reward_dir)
    tok.pad_token = None
    tok.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(reward_dir)
    model.config.pad_token_id = None
    d = tmp_path_factory.mktemp("rm_no_pad")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def _last_token_score(judge, text: str, keep: int | None = None) -> float:
    """The reward head on the hidden state of the text's true last token (of its last `keep` tokens)."""
    import torch

    model, tok = judge._load()
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -(keep or 0):]
    with torch.inference_mode():
        return float(model.score(model.model(input_ids=ids.to(model.device)).last_hidden_state[:, -1])[0, 0])


def test_reward_model_reads_the_true_last_token_with_no_pad_token(reward_dir_no_pad):
    from methods.judges.reward_model import RewardModelJudge

    judge = RewardModelJudge(name_or_path=reward_dir_no_pad, batch_size=8)
    model, tok = judge._load()
    texts = [judge._text(tok, it, o) for it, o in zip(ITEMS, OUT_2)]
    assert all(t.endswith(tok.eos_token) for t in texts) and tok.pad_token == tok.eos_token
    batched = judge.score(ITEMS, OUT_2)
    assert len({len(tok(t)["input_ids"]) for t in texts}) > 1  # padding is exercised
    assert batched == pytest.approx(RewardModelJudge(name_or_path=reward_dir_no_pad, batch_size=1).score(ITEMS, OUT_2),
                                    abs=1e-5)
    # the score is read at the final eos, not one token before it
    assert batched == pytest.approx([_last_token_score(judge, t) for t in texts], abs=1e-5)


@pytest.fixture(scope="module")
def reward_dir_pad_is_eos(tmp_path_factory, reward_dir_no_pad):
    """As RewardTrainerSpec saves a classifier trained on a tokenizer without a pad token: pad = eos in
    the tokenizer and in the config."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(reward_dir_no_pad)
    tok.pad_token = tok.eos_token
    model = transformers.AutoModelForSequenceClassification.from_pretrained(reward_dir_no_pad)
    model.config.pad_token_id = tok.eos_token_id
    d = tmp_path_factory.mktemp("rm_pad_eos")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def test_reward_model_reads_where_training_read_when_pad_is_eos(reward_dir_pad_is_eos):
    """TRL trains on right-padded rows that end in eos, padded with eos: the classifier's forward reads
    the rightmost non-pad token, the one before the final eos. The judge (left padding) reads the same
    token: its scores equal the training-time logits of the same texts, batched as TRL batches them."""
    import torch

    from methods.judges.reward_model import RewardModelJudge

    judge = RewardModelJudge(name_or_path=reward_dir_pad_is_eos, batch_size=8)
    model, tok = judge._load()
    texts = [judge._text(tok, it, o) for it, o in zip(ITEMS, OUT_2)]
    assert all(t.endswith(tok.eos_token) for t in texts) and model.config.pad_token_id == tok.eos_token_id
    enc = tok(texts, padding=True, padding_side="right", return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        trained = [float(x) for x in model(**enc).logits[:, 0]]
    assert judge.score(ITEMS, OUT_2) == pytest.approx(trained, abs=1e-5)
    before_eos = [_last_token_score(judge, t[: -len(tok.eos_token)]) for t in texts]
    assert trained == pytest.approx(before_eos, abs=1e-5)


def test_reward_model_truncation_keeps_the_end(reward_dir):
    from methods.judges.reward_model import RewardModelJudge

    judge = RewardModelJudge(name_or_path=reward_dir, batch_size=8, max_length=24)
    _, tok = judge._load()
    texts = [judge._text(tok, it, o) for it, o in zip(ITEMS, OUT_2)]
    assert all(len(tok(t)["input_ids"]) > 24 for t in texts)
    assert judge.score(ITEMS, OUT_2) == pytest.approx([_last_token_score(judge, t, keep=24) for t in texts], abs=1e-5)


def test_judges_go_to_the_gpu_when_there_is_one(reward_dir, tmp_path, monkeypatch):
    """With CUDA, both judges move their model there (faked here: `to` is recorded), in the half
    dtype the config names; without it they stay float32 on the CPU."""
    import json

    import torch
    import transformers

    from methods.judges.llm import LLMJudge, device_and_dtype
    from methods.judges.reward_model import RewardModelJudge

    assert device_and_dtype(reward_dir) == ("cpu", torch.float32) or torch.cuda.is_available()
    bf16 = tmp_path / "bf16"
    transformers.AutoModelForSequenceClassification.from_pretrained(reward_dir).save_pretrained(bf16)
    transformers.AutoTokenizer.from_pretrained(reward_dir).save_pretrained(bf16)
    cfg = json.loads((bf16 / "config.json").read_text())
    cfg["dtype"] = cfg["torch_dtype"] = "bfloat16"
    (bf16 / "config.json").write_text(json.dumps(cfg))
    if not torch.cuda.is_available():
        assert device_and_dtype(str(bf16)) == ("cpu", torch.float32)  # bf16 is slow on this CPU
    moved = []
    real_to = torch.nn.Module.to

    def fake_to(self, *args, **kw):
        if args and args[0] == "cuda":
            moved.append(type(self).__name__)
            return self
        return real_to(self, *args, **kw)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.nn.Module, "to", fake_to)
    assert device_and_dtype(str(bf16)) == ("cuda", torch.bfloat16)
    assert device_and_dtype(reward_dir) == ("cuda", torch.float32)
    rm = RewardModelJudge(name_or_path=str(bf16))
    model, _ = rm._load()
    assert moved == ["LlamaForSequenceClassification"] and model.dtype == torch.bfloat16
    assert len(rm.score(ITEMS[:1], OUT_2[:1])) == 1
    # the llm judge's model_path branch: a causal LM from the same weights
    lm = tmp_path / "lm"
    cfg_lm = transformers.AutoConfig.from_pretrained(bf16)
    cfg_lm.architectures = ["LlamaForCausalLM"]
    transformers.LlamaForCausalLM(cfg_lm).save_pretrained(lm)
    transformers.AutoTokenizer.from_pretrained(reward_dir).save_pretrained(lm)
    cfg = json.loads((lm / "config.json").read_text())
    cfg["dtype"] = cfg["torch_dtype"] = "bfloat16"
    (lm / "config.json").write_text(json.dumps(cfg))
    moved.clear()
    model, *_ = LLMJudge(model_path=str(lm), labels=("A", "B"))._load()
    assert moved == ["LlamaForCausalLM"] and model.dtype == torch.bfloat16


def test_alpaca_eval_judge_needs_key(monkeypatch):
    from methods.judges.alpaca_eval_api import AlpacaEvalJudge, to_preference

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = AlpacaEvalJudge()
    assert judge.name == "weighted_alpaca_eval_gpt4_turbo"
    for name in [m for m in sys.modules if m.startswith("alpaca_eval.annotators")]:  # an earlier test's import
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        judge.validate()
    assert "alpaca_eval.annotators" not in sys.modules  # refused before the heavy import
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    judge.validate()
    with pytest.raises(ValueError, match="no such alpaca_eval annotator"):
        AlpacaEvalJudge(annotators_config="nope").validate()
    assert [to_preference(p) for p in (0, 1.2, None)][:2] == [1.5, 1.2]


def test_paper_preset_without_key_fails_fast(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["SELFALIGN_CACHE"] = str(tmp_path / "cache")
    (tmp_path / "zephyr").mkdir()
    (tmp_path / "zephyr" / "config.json").write_text("{}")  # the model given locally, as offline users do
    r = subprocess.run([sys.executable, "-m", "experiments.run", "experiment=dpo_ultrafeedback_paper",
                        f"model.local_path={tmp_path}/zephyr", f"paths.runs={tmp_path}/runs"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "OPENAI_API_KEY" in r.stderr
    assert not (tmp_path / "cache").exists()  # no model converted or loaded, nothing cached
    run_dir = tmp_path / "runs" / "dpo_ultrafeedback_paper" / "default"
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "run.json").exists()  # no run started


# ---- judge agreement ---------------------------------------------------------------------------
def test_agreement_metrics_hand_made():
    """The case in `analysis.judge_agreement.agreement_metrics`'s docstring."""
    from analysis.judge_agreement import agreement_metrics

    m = agreement_metrics([1.2, 1.8, 1.4, 1.6], [1.2, 1.6, 1.2, 1.2], [1.0, 2.0, 1.95, 1.3],
                          [10, 5, 7, 3], [20, 5, 1, 9], margin=0.4)
    assert m["agreement"] == 75.0
    assert m["decisive_agreement"] == pytest.approx(200 / 3) and m["n_decisive"] == 3
    assert m["position_bias_rate"] == 25.0
    assert m["judge_prefers_longer"] == pytest.approx(100 / 3) and m["gpt4_prefers_longer"] == 0.0
    assert m["n_unequal_length"] == 3 and m["mean_abs_diff"] == pytest.approx(0.3125)


def test_sample_pairs_deterministic(shared_data):
    from analysis.judge_agreement import sample_pairs

    d = shared_data / "alpaca_eval" / "annotations_gpt4_turbo"
    a, b = sample_pairs(d, 20, seed=0), sample_pairs(d, 20, seed=0)
    assert [p["id"] for p in a] == [p["id"] for p in b] != [p["id"] for p in sample_pairs(d, 20, seed=1)]
    assert len({p["id"].split(":")[0] for p in a}) > 5  # drawn across the files
    assert all(p["generator_2"] != "gpt4_1106_preview" and 1 <= p["preference"] <= 2 for p in a)


def test_judge_agreement_cli_on_tiny_model(shared_data, tmp_path):
    import json
    import os

    out = tmp_path / "agree.json"
    r = subprocess.run([sys.executable, "-m", "analysis.judge_agreement", "--judge", "llm", "--n", "4",
                        "--model", "tiny_llama", "--out", str(out), "judge.max_output_tokens=64"],
                       cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "SELFALIGN_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(out.read_text())
    assert m["n"] == 4 and 0 <= m["agreement"] <= 100 and len(m["pairs"]) == 4
