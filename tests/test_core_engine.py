"""Generation engine and log-prob scorer on the tiny model."""
from __future__ import annotations

import pytest
import torch


def test_generation_is_deterministic_and_batch_independent(tiny):
    from methods.core.generation import HFEngine, SamplingParams

    _, model, tok = tiny
    prompts = ["hello", "a much longer prompt than the first one", "mid length prompt"]
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=6)
    one = HFEngine(model, tok, batch_size=1, progress=False).generate(prompts, params)
    many = HFEngine(model, tok, batch_size=8, progress=False).generate(prompts, params)
    assert [[c.text for c in cs] for cs in one] == [[c.text for c in cs] for cs in many]
    assert all(len(cs) == 2 and all(1 <= c.n_tokens <= 6 for c in cs) for cs in many)


def test_sampling_seed_reproduces(tiny):
    from methods.core.generation import HFEngine, SamplingParams

    _, model, tok = tiny
    eng = HFEngine(model, tok, batch_size=4, progress=False)
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=7)
    a = [[c.text for c in cs] for cs in eng.generate(["x", "y"], p)]
    b = [[c.text for c in cs] for cs in eng.generate(["x", "y"], p)]
    assert a == b
    assert len({t for cs in a for t in cs}) > 1  # sampling, not greedy


@pytest.mark.parametrize("bad", [dict(n=0), dict(temperature=-1), dict(top_p=0), dict(max_new_tokens=0)])
def test_sampling_params_reject_bad_values(bad):
    from methods.core.generation import SamplingParams

    with pytest.raises(ValueError, match=next(iter(bad))):
        SamplingParams(**bad)


def test_logprobs_equal_naive_full_softmax(tiny):
    """Sum of log π(y_t | x, y_<t) over response tokens (+ end-of-turn), computed naively per sequence."""
    from methods.core.scoring import encode_pairs, sequence_logprobs

    _, model, tok = tiny
    prompts, responses = ["hi there", "what is 2+2?", "q"], ["hello!", "4", "a longer answer here"]
    got = sequence_logprobs(model, tok, prompts, responses, batch_size=2)
    for (ids, p_len), s, n in zip(encode_pairs(tok, prompts, responses), got.sum, got.n_tokens):
        with torch.no_grad():
            lp = model(torch.tensor([ids], device=model.device)).logits.log_softmax(-1)[0]
        want = sum(lp[t - 1, ids[t]].item() for t in range(p_len, len(ids)))
        assert s == pytest.approx(want, abs=1e-4)
        assert n == len(ids) - p_len
    assert got.mean[0] == pytest.approx(got.sum[0] / got.n_tokens[0])


def test_reference_logprobs_disable_lora(tiny):
    """With LoRA, reference=True scores under the base weights: equal to the model before the adapter."""
    from peft import LoraConfig, get_peft_model

    from methods.core.scoring import implicit_reward, sequence_logprobs

    src, _, tok = tiny
    model, _ = src.load(for_generation=False)
    base = sequence_logprobs(model, tok, ["hi"], ["yo"])
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    pol = sequence_logprobs(peft, tok, ["hi"], ["yo"])
    ref = sequence_logprobs(peft, tok, ["hi"], ["yo"], reference=True)
    assert ref.sum[0] == pytest.approx(base.sum[0], abs=1e-5)
    assert pol.sum[0] != pytest.approx(ref.sum[0], abs=1e-4)
    assert implicit_reward(pol, ref, 0.1)[0] == pytest.approx(0.1 * (pol.sum[0] - ref.sum[0]))


def test_scored_tokens_are_the_ones_dpo_trains_on(tiny):
    """encode_pairs splits prompt and response exactly where TRL's DPOTrainer tokenisation does."""
    from methods.core.scoring import encode_pairs

    _, _, tok = tiny
    prompt, response = "say hi", "hi!"
    (ids, p_len), = encode_pairs(tok, [prompt], [response])
    conv = [{"role": "user", "content": prompt}]
    p_ids = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
    full = tok.apply_chat_template(conv + [{"role": "assistant", "content": response}], tokenize=True)
    p_ids = p_ids["input_ids"] if hasattr(p_ids, "keys") else p_ids
    full = full["input_ids"] if hasattr(full, "keys") else full
    assert ids == list(full) and p_len == len(p_ids) and ids[:p_len] == list(p_ids)
    assert tok.eos_token_id in ids[p_len:]  # the end-of-turn token is scored


def test_model_identity_is_in_cache_keys(tmp_path):
    """Two models with the same display name but different weights never share a cached artifact."""
    from methods.core.models import HubModel, TinyLlama

    a = HubModel("org/m", local_path=None, name="m").describe()
    b = HubModel("org/m", local_path=str(tmp_path), name="m").describe()
    assert a != b and a["name"] == b["name"] == "m"
    t1, t2 = TinyLlama(cache_dir=str(tmp_path / "x")), TinyLlama(cache_dir=str(tmp_path / "y"))
    assert t1.describe() == t2.describe()  # where it is cached does not matter
    assert TinyLlama(cache_dir=str(tmp_path), seed=1).describe() != t1.describe()
