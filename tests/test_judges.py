"""Judges behind one interface: the local `llm` judge and a `reward_model` on tiny models built in
code, the `alpaca_eval` judge's fail-fast validation, and the judge-agreement figures."""
from __future__ import annotations

import subprocess
import sys
import time

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
    assert single.score(ITEMS, OUT_2) == pytest.approx(s2, abs=1e-5)  # right padding does not change a score
    import math

    prefs = judge.compare(ITEMS, OUT_1, OUT_2)
    assert prefs == pytest.approx([1 + 1 / (1 + math.exp(a - b)) for a, b in zip(s1, s2)])
    hard = RewardModelJudge(name_or_path=reward_dir, preference="hard").compare(ITEMS, OUT_1, OUT_2)
    assert hard == [1.0 if a > b else 2.0 for a, b in zip(s1, s2)]
    with pytest.raises(ValueError, match="preference"):
        RewardModelJudge(name_or_path=reward_dir, preference="soft").validate()


# ---- alpaca_eval -------------------------------------------------------------------------------
def test_alpaca_eval_judge_needs_key(monkeypatch):
    from methods.judges.alpaca_eval_api import AlpacaEvalJudge, to_preference

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = AlpacaEvalJudge()
    assert judge.name == "weighted_alpaca_eval_gpt4_turbo"
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        judge.validate()
    assert time.perf_counter() - t0 < 1.0 and "alpaca_eval.annotators" not in sys.modules
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    judge.validate()
    with pytest.raises(ValueError, match="no such alpaca_eval annotator"):
        AlpacaEvalJudge(annotators_config="nope").validate()
    assert [to_preference(p) for p in (0, 1.2, None)][:2] == [1.5, 1.2]


def test_paper_preset_without_key_fails_fast(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["SELFALIGN_CACHE"] = str(tmp_path / "cache")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "experiments.run", "experiment=dpo_ultrafeedback_paper",
                        f"paths.runs={tmp_path}/runs"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - t0
    assert r.returncode != 0 and "OPENAI_API_KEY" in r.stderr
    assert seconds < 10, f"took {seconds:.1f} s"
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
