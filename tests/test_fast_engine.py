"""FastEngine (preallocated KV cache, continuous batching) against HFEngine, the reference, on tiny models.

Greedy: the same completions (text, token counts, finished flags). Sampling: the same distribution
(a chi-square test of homogeneity between the two engines' tokens, and of goodness of fit to the
distribution HF's own warpers give); the same check fails for a deliberately wrong temperature or
top-p, so it can fail.
"""
from __future__ import annotations

import copy

import pytest
import torch

from methods.core.fast_engine import FastEngine, next_tokens, top_p_filter
from methods.core.generation import HFEngine, SamplingParams, left_pad

PROMPTS = ["hi", "hello there, a longer prompt", "x", "mid length one", "another prompt of some size here",
           "q?", "abc", "what is 2+2", "a", "tell me a story about a cat"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lively(tiny):
    """The tiny model's architecture with larger random weights: varied greedy outputs, peaked logits.

    (The fixture's own weights, std 0.02, give near-uniform logits and one repeated greedy token.)"""
    _, model, tok = tiny
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m, tok


def _greedy_tokens(model, tok, prompts, max_new):
    ids = HFEngine(model, tok).encode(prompts)
    inp, attn = left_pad(ids, tok.pad_token_id)
    with torch.inference_mode():
        out = model.generate(input_ids=inp, attention_mask=attn, max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id])
    return out[:, inp.size(1):].tolist()


@pytest.fixture(scope="module")
def stopping(lively):
    """`lively` with a second end-of-turn token chosen so that some prompts stop early, at different
    steps, and at least one runs into max_new_tokens (both engines read generation_config)."""
    model, tok = lively
    max_new = 24
    rows = _greedy_tokens(model, tok, PROMPTS, max_new)
    best = None
    for t in sorted({t for r in rows for t in r} - {tok.pad_token_id, tok.eos_token_id}):
        first = [r.index(t) if t in r else None for r in rows]
        stops = {f for f in first if f is not None}
        if None in first and len(stops) >= 3 and (best is None or len(stops) > best[0]):
            best = (len(stops), t)
    assert best is not None, "no token stops some prompts and not others"
    m = copy.deepcopy(model)
    m.generation_config.eos_token_id = [tok.eos_token_id, best[1]]
    return m, tok, max_new


def _as_tuples(res):
    return [[(c.text, c.n_tokens, c.finished) for c in cs] for cs in res]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_greedy_equals_hf_generate(stopping, batch_size):
    """Prompts of different lengths, early EOS at different steps and max_new_tokens cut-offs, n=2;
    batch 3 refills rows as sequences finish, 16 holds every sequence at once."""
    model, tok, max_new = stopping
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=max_new)
    want = _as_tuples(HFEngine(model, tok, batch_size=4, progress=False).generate(PROMPTS, params))
    eng = FastEngine(model, tok, batch_size=batch_size, progress=False, refill_min=1)
    got = _as_tuples(eng.generate(PROMPTS, params))
    assert got == want
    flags = [c[2] for cs in want for c in cs]
    assert any(flags) and not all(flags)  # the test covers both ways of stopping
    assert len({c[1] for cs in want for c in cs if c[2]}) >= 3  # finishing at different steps
    assert eng.last_stats.n_tokens == sum(c[1] for cs in want for c in cs)
    if batch_size == 3:
        assert eng.last_stats.extra["prefill_calls"] > 1  # rows were refilled


def test_greedy_equals_hf_with_eager_attention(stopping):
    """The eager attention path (an additive float mask) gives the same completions."""
    model, tok, max_new = stopping
    m = copy.deepcopy(model)
    m.set_attn_implementation("eager")
    params = SamplingParams(max_new_tokens=max_new)
    want = _as_tuples(HFEngine(model, tok, batch_size=8, progress=False).generate(PROMPTS, params))
    assert _as_tuples(FastEngine(m, tok, batch_size=4, progress=False).generate(PROMPTS, params)) == want


def test_greedy_equals_hf_on_the_fixture_model(tiny):
    _, model, tok = tiny
    params = SamplingParams(max_new_tokens=5)
    want = _as_tuples(HFEngine(model, tok, batch_size=8, progress=False).generate(PROMPTS[:4], params))
    assert _as_tuples(FastEngine(model, tok, batch_size=2, progress=False).generate(PROMPTS[:4], params)) == want
    assert FastEngine(model, tok, progress=False).generate([], params) == []


def test_sampling_math_is_hf_warpers():
    """Temperature then top-p: the same scores as TemperatureLogitsWarper + TopPLogitsWarper, bit for bit."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 300, generator=g) * 3
    for temp, top_p in [(0.8, 0.9), (1.3, 0.5), (0.7, 0.001), (1.0, 0.95)]:
        want = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temp)(None, logits))
        mine = top_p_filter(logits / temp, top_p)
        assert torch.equal(mine, want)
    assert torch.equal(next_tokens(logits, 0.0, 1.0), logits.argmax(-1))
    # top_p tiny keeps exactly one token (min_tokens_to_keep=1): sampling is then the argmax
    assert torch.equal(next_tokens(logits, 0.8, 1e-6, torch.Generator().manual_seed(0)), logits.argmax(-1))


class _Recorder:
    """The tokenizer, recording the token ids each engine decodes (the completion's tokens, EOS cut)."""

    def __init__(self, tok):
        self._tok, self.seen = tok, []

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def decode(self, ids, **kw):
        self.seen.append(tuple(ids))
        return self._tok.decode(ids, **kw)


N = 4000
T, TOP_P = 0.8, 0.9


def _samples(engine_cls, model, tok, temperature, top_p, batch_size, seed):
    rec = _Recorder(tok)
    eng = engine_cls(model, rec, batch_size=batch_size, progress=False)
    eng.generate([PROMPTS[1]], SamplingParams(n=N, temperature=temperature, top_p=top_p, max_new_tokens=2, seed=seed))
    assert len(rec.seen) == N
    return [tuple(s) + (-1,) * (2 - len(s)) for s in rec.seen]  # -1: end of turn (or after it)


def _homogeneity_p(a: list[int], b: list[int]) -> float:
    """p-value of a chi-square test that a and b come from one distribution (bins under 5 expected pooled)."""
    from collections import Counter

    from scipy.stats import chi2_contingency

    ca, cb = Counter(a), Counter(b)
    keys = sorted(set(ca) | set(cb))
    big = [k for k in keys if (ca[k] + cb[k]) / 2 >= 5]
    rest = [k for k in keys if k not in big]
    table = [[ca[k] for k in big] + [sum(ca[k] for k in rest)], [cb[k] for k in big] + [sum(cb[k] for k in rest)]]
    table = [[x for x, y in zip(*table) if x + y > 0], [y for x, y in zip(*table) if x + y > 0]]
    return chi2_contingency(table)[1]


@pytest.fixture(scope="module")
def hf_samples(lively):
    model, tok = lively
    return _samples(HFEngine, model, tok, T, TOP_P, batch_size=N, seed=11)


def _exact_first_token_probs(model, tok):
    """The first token's distribution under HF's own warpers, from the model's logits."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    ids = HFEngine(model, tok).encode([PROMPTS[1]])
    with torch.inference_mode():
        logits = model(torch.tensor(ids)).logits[:, -1].float()
    return TopPLogitsWarper(TOP_P)(None, TemperatureLogitsWarper(T)(None, logits)).softmax(-1)[0]


def _first(samples, tok) -> list[int]:
    return [s[0] if s[0] != -1 else tok.eos_token_id for s in samples]


def _fit_p(tokens: list[int], probs) -> float:
    """p-value of a chi-square goodness of fit of the tokens to probs (bins under 5 expected pooled)."""
    from collections import Counter

    from scipy.stats import chisquare

    c = Counter(tokens)
    expected = probs * len(tokens)
    big = [k for k in range(len(probs)) if expected[k] >= 5]
    obs = [c[k] for k in big] + [len(tokens) - sum(c[k] for k in big)]
    exp = [float(expected[k]) for k in big] + [len(tokens) - float(expected[big].sum())]
    if exp[-1] < 1e-9:  # nothing outside the big bins can occur (top-p)
        if obs[-1]:
            return 0.0  # tokens that top-p removes were drawn
        obs, exp = obs[:-1], exp[:-1]
    exp = [e * sum(obs) / sum(exp) for e in exp]
    return chisquare(obs, exp)[1]


def test_sampled_tokens_match_hf_in_distribution(lively, hf_samples):
    """4000 two-token samples of one prompt at temperature 0.8, top-p 0.9 from each engine (the fast
    engine with refills: batch 1000): each position's token distribution is the same."""
    model, tok = lively
    fast = _samples(FastEngine, model, tok, T, TOP_P, batch_size=1000, seed=13)  # not HF's seed: independent draws
    probs = _exact_first_token_probs(model, tok)
    assert 5 <= int((probs > 0).sum()) < len(probs) / 2  # top-p cuts a real tail; several tokens remain
    for k in range(2):
        p = _homogeneity_p([s[k] for s in hf_samples], [s[k] for s in fast])
        assert p > 1e-3, f"position {k}: p={p:.2e}"
    assert _fit_p(_first(fast, tok), probs) > 1e-3
    assert _fit_p(_first(hf_samples, tok), probs) > 1e-3
    assert len(set(fast)) > 20  # many distinct samples: not one repeated draw


@pytest.mark.parametrize("temperature,top_p", [(1.0, TOP_P), (0.6, TOP_P), (T, 1.0), (T, 0.7)])
def test_the_distribution_check_fails_for_wrong_settings(lively, hf_samples, temperature, top_p):
    """The same check, the fast engine run with a wrong temperature or top-p: it fails."""
    model, tok = lively
    wrong = _samples(FastEngine, model, tok, temperature, top_p, batch_size=N, seed=13)
    assert _homogeneity_p([s[0] for s in hf_samples], [s[0] for s in wrong]) < 1e-6
    assert _fit_p(_first(wrong, tok), _exact_first_token_probs(model, tok)) < 1e-6


def test_sampling_is_deterministic_and_leaves_the_global_rng(lively):
    model, tok = lively
    eng = FastEngine(model, tok, batch_size=3, progress=False)
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=7)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = _as_tuples(eng.generate(PROMPTS[:4], p))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert a == _as_tuples(eng.generate(PROMPTS[:4], p))
    assert a != _as_tuples(eng.generate(PROMPTS[:4], SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=8)))
    assert len({c[0] for cs in a for c in cs}) > 1


def test_run_engine_dispatches_fast(tmp_path):
    from experiments.pipeline import build_run
    from tests.test_configs import compose

    run = build_run(compose(["model=tiny_llama", "method=dpo", "generation=fast", f"run_dir={tmp_path}/r",
                             f"paths.cache={tmp_path}/c"]))
    eng = run.engine()
    assert isinstance(eng, FastEngine) and eng.batch_size == 64
    assert run.engine_key()["backend"] == "fast"
    out = eng.generate(["hi"], SamplingParams(max_new_tokens=3))
    assert len(out) == 1 and out[0][0].n_tokens == 3


def test_refuses_a_prompt_past_the_context_like_hf(tiny):
    if not hasattr(HFEngine, "_check_context"):
        pytest.skip("HFEngine has no context check here")
    _, model, tok = tiny
    with pytest.raises(ValueError, match=r"context length of \d+ tokens"):
        FastEngine(model, tok, progress=False).generate(["hello", "z" * 10000], SamplingParams(max_new_tokens=8))


def test_one_new_token_and_a_lora_model(stopping):
    """max_new_tokens=1 (every row done at its prefill), and a PEFT-wrapped model (LoRA)."""
    from peft import LoraConfig, get_peft_model

    model, tok, _ = stopping
    params = SamplingParams(n=2, max_new_tokens=1)
    want = _as_tuples(HFEngine(model, tok, batch_size=4, progress=False).generate(PROMPTS, params))
    assert _as_tuples(FastEngine(model, tok, batch_size=3, progress=False).generate(PROMPTS, params)) == want
    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.eval()
    params = SamplingParams(max_new_tokens=12)
    want = _as_tuples(HFEngine(peft, tok, batch_size=4, progress=False).generate(PROMPTS, params))
    assert _as_tuples(FastEngine(peft, tok, batch_size=3, progress=False).generate(PROMPTS, params)) == want
    assert want != _as_tuples(HFEngine(model, tok, batch_size=4, progress=False).generate(PROMPTS, params))
