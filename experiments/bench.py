"""Throughput benchmark: `python -m experiments.bench [--model smollm2_135m|tiny_llama] [--quick]`.

Measured in one run, on this machine:
1. the CPU's fp32 matmul peak (GFLOP/s), a large square `torch.mm`;
2. the generation engine at batch 64 against a one-prompt-at-a-time `generate` loop (tokens/s, same
   prompts, greedy, same max_new_tokens), and the engine's share of the peak (2·N FLOPs a token);
3. the DPO trainer's training tokens/s (chosen + rejected sequence tokens), and its model-FLOPs share
   of the peak (6·N FLOPs a token for the policy's forward and backward; the reference pass is
   precomputed and reported apart).
Targets: engine ≥ 8× the loop; DPO ≥ 30% of the peak. Nothing here is a timed test.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def prompts(n: int) -> list[str]:
    from methods.data.ifeval_synth import IFEvalSynth

    return [it["instruction"] for it in IFEvalSynth(seed=123, n_eval=n).eval()][:n]


def bench_generation(model, tok, n_prompts: int, n_loop: int, max_new: int) -> dict:
    from methods.core.generation import HFEngine, SamplingParams

    ps = prompts(n_prompts)
    params = SamplingParams(max_new_tokens=max_new)
    eng = HFEngine(model, tok, batch_size=64, progress=False)
    eng.generate(ps[:2], SamplingParams(max_new_tokens=4))  # warm-up
    eng.generate(ps, params)
    batched = eng.last_stats
    loop = HFEngine(model, tok, batch_size=1, progress=False)
    loop.generate(ps[:n_loop], params)
    single = loop.last_stats
    return {
        "engine_tok_s": batched.tokens_per_second,
        "engine_tokens": batched.n_tokens,
        "loop_tok_s": single.tokens_per_second,
        "loop_tokens": single.n_tokens,
        "speedup": batched.tokens_per_second / single.tokens_per_second,
    }


def bench_dpo(src, n_pairs: int, batch: int, resp_words: int) -> dict:
    import random

    from datasets import Dataset

    from methods.core.dpo import PreferenceDPOTrainer
    from trl import DPOConfig

    rng = random.Random(0)
    words = "the a cat sat on mat and then went home to sleep while rain fell over quiet town".split()
    say = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
    rows = [
        {"prompt": [{"role": "user", "content": say(30)}], "chosen": [{"role": "assistant", "content": say(resp_words)}],
         "rejected": [{"role": "assistant", "content": say(resp_words)}]}
        for _ in range(n_pairs)
    ]
    model, tok = src.load(for_generation=False)
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=n_pairs // batch, report_to=[],
                         bf16=False, use_cpu=True, gradient_checkpointing=False, precompute_ref_log_probs=True,
                         save_strategy="no", logging_steps=1, disable_tqdm=True, learning_rate=1e-6)
        t0 = time.perf_counter()
        trainer = PreferenceDPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        t_ref = time.perf_counter() - t0  # tokenisation + precomputed reference pass
        step_times, step_tokens = [], []

        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def on_step_begin(self, *a, **k):
                self.t, self.n = time.perf_counter(), trainer._total_train_tokens

            def on_step_end(self, *a, **k):
                step_times.append(time.perf_counter() - self.t)
                step_tokens.append(trainer._total_train_tokens - self.n)

        trainer.add_callback(Clock())
        trainer.train()
    # the first step pays one-off costs (optimizer state allocation)
    secs, toks = sum(step_times[1:]), sum(step_tokens[1:])
    return {"dpo_tok_s": toks / secs, "dpo_s_per_step": secs / max(len(step_times) - 1, 1),
            "dpo_tokens_per_step": toks / max(len(step_tokens) - 1, 1), "setup_and_ref_s": t_ref}


def main(argv=None) -> dict:
    import torch
    import transformers
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (seconds on the tiny model)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    a = ap.parse_args(argv)
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(os.cpu_count() or 1)
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"model={a.model}"])
    src = instantiate(cfg.model)
    model, tok = src.load()
    n_params = sum(p.numel() for p in model.parameters())  # tied embedding counted once: it is the LM head
    peak = matmul_peak(1024 if a.quick else 2048)
    gen = bench_generation(model, tok, 16 if a.quick else 64, 2 if a.quick else 4, 16 if a.quick else 64)
    dpo = bench_dpo(src, 8 if a.quick else 64, 4 if a.quick else 8, 20 if a.quick else 80)
    res = {"model": src.name, "threads": torch.get_num_threads(), "params": n_params, "matmul_peak_gflops": peak, **gen, **dpo}
    res["engine_peak_share"] = gen["engine_tok_s"] * 2 * n_params / (peak * 1e9)
    res["dpo_peak_share"] = dpo["dpo_tok_s"] * 6 * n_params / (peak * 1e9)
    print(f"model {src.name} ({n_params / 1e6:.1f}M params), {res['threads']} threads")
    print(f"fp32 matmul peak            {peak:8.1f} GFLOP/s")
    print(f"engine, batch 64            {gen['engine_tok_s']:8.1f} tok/s  ({100 * res['engine_peak_share']:.1f}% of peak)")
    print(f"one-prompt generate loop    {gen['loop_tok_s']:8.1f} tok/s")
    print(f"engine / loop               {gen['speedup']:8.2f}x   (target ≥ 8x)")
    print(f"DPO training                {dpo['dpo_tok_s']:8.1f} tok/s  ({100 * res['dpo_peak_share']:.1f}% of peak, target ≥ 30%)"
          f"  {dpo['dpo_s_per_step']:.2f} s/step, {dpo['dpo_tokens_per_step']:.0f} tokens/step")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
