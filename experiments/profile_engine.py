"""Where the fast engine's generation time goes: `python -m experiments.profile_engine [--batch 64]`.

Runs `FastEngine.generate` once on the benchmark's prompts (greedy, `--max-new` tokens) under
`torch.profiler` and prints the operators by self CPU time, then times the decode step's matmul shapes
alone (a 64-row slice through the MLP's up projection and the LM head) against the square-matmul peak
of `experiments.bench`. Nothing here is a timed test; the README's Throughput section quotes a run.
"""
from __future__ import annotations

import argparse
import os
import time


def shape_gflops(m: int, k: int, n: int, reps: int) -> float:
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9


def main(argv=None) -> None:
    import torch
    import transformers
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from torch.profiler import ProfilerActivity, profile

    from experiments.bench import matmul_peak, prompts
    from methods.core.fast_engine import FastEngine
    from methods.core.generation import SamplingParams

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--rows", type=int, default=25, help="operators listed")
    a = ap.parse_args(argv)
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(os.cpu_count() or 1)
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=["model=smollm2_135m"])
    model, tok = instantiate(cfg.model).load()
    ps = prompts(a.batch)
    eng = FastEngine(model, tok, batch_size=a.batch, progress=False)
    params = SamplingParams(max_new_tokens=a.max_new)
    eng.generate(ps[:2], SamplingParams(max_new_tokens=4))
    eng.generate(ps, params)
    st = eng.last_stats
    print(f"batch {a.batch}, {a.max_new} new tokens: {st.tokens_per_second:.1f} tok/s, {st.extra}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        eng.generate(ps, params)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))
    hidden, inter = model.config.hidden_size, model.config.intermediate_size
    print(f"square matmul peak (2048², as experiments.bench): {matmul_peak():.1f} GFLOP/s")
    print(f"({a.batch}x{hidden})@({hidden}x{inter}) MLP up:   {shape_gflops(a.batch, hidden, inter, 100):.1f} GFLOP/s")
    print(f"({a.batch}x{hidden})@({hidden}x{model.config.vocab_size}) LM head: "
          f"{shape_gflops(a.batch, hidden, model.config.vocab_size, 20):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
