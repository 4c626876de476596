"""Throughput benchmark: `python -m experiments.bench [--model smollm2_135m|tiny_llama] [--quick]`.

Measured in one run, on this machine:
1. the CPU's fp32 matmul peak (GFLOP/s), a large square `torch.mm`;
2. generation, greedy, with EOS stopping on (tokens/s counts useful tokens: up to and including the
   end-of-turn token, never padding), on the same prompts at batch 64 and at batch 256: the fast
   engine (`methods.core.fast_engine.FastEngine`: preallocated KV cache, continuous batching) against
   HF `generate` (`HFEngine`), and a one-prompt-at-a-time `generate` loop; each as a share of the
   peak (2·N FLOPs a token), and `engine/hf_generate`, the fast engine's tokens/s over HF generate's
   at batch 64 (and 256), with the share of its completions identical to HF's;
3. the log-prob scorer's tokens/s (`sequence_logprobs` on the fast engine's completions, prompt +
   response tokens through the model; its share of the peak at 2·N FLOPs a token is an upper bound
   on the FLOPs done, as the LM head runs on response positions only);
4. the DPO trainer's training tokens/s (chosen + rejected sequence tokens), and its model-FLOPs share
   of the peak (6·N FLOPs a token for the policy's forward and backward; the reference pass is
   precomputed and reported apart).
5. PPO (`methods.core.trainers.ppo`, conf/trainer/ppo.yaml's settings, the gold judge as reward): rollout
   tokens/s (generated tokens; at 2·N FLOPs a token, a lower bound as the prefill is not counted) and
   update tokens/s (rollout tokens × epochs) with its model-FLOPs share of the peak (policy + reference
   no-grad forwards at 2·N, training passes at 6·N), averaged over updates 2.. (`--only-ppo`: just this).
Generation also reports its share of the peak counting every token through the model (prompts prefilled
plus tokens generated, at 2·N), and the ceiling that mix sets: useful tokens/s at 100% of the peak.
Targets: HF engine ≥ 8× the loop; DPO ≥ 30% of the peak. Nothing here is a timed test.
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


def _timed(eng, ps, params):
    from methods.core.generation import SamplingParams

    eng.generate(ps[:2], SamplingParams(max_new_tokens=4))  # warm-up
    out = eng.generate(ps, params)
    return out, eng.last_stats


def bench_generation(model, tok, n_prompts: int, n_loop: int, max_new: int, batches=(64, 256)) -> tuple[dict, list]:
    """HF generate and the fast engine at each batch size, and the one-prompt loop, on the same prompts
    (greedy, EOS on). Returns the figures and the fast engine's completions at the first batch size."""
    from methods.core.fast_engine import FastEngine
    from methods.core.generation import HFEngine, SamplingParams

    ps = prompts(n_prompts)
    params = SamplingParams(max_new_tokens=max_new)
    res: dict = {"gen_prompts": len(ps), "gen_max_new_tokens": max_new, "gen_batches": list(batches)}
    completions = None
    for b in batches:
        hf_out, hf = _timed(HFEngine(model, tok, batch_size=b, progress=False), ps, params)
        fast_out, fast = _timed(FastEngine(model, tok, batch_size=b, progress=False), ps, params)
        same = sum(x == y for xs, ys in zip(hf_out, fast_out) for x, y in zip(xs, ys))
        res.update({
            f"hf_b{b}_tok_s": hf.tokens_per_second, f"hf_b{b}_tokens": hf.n_tokens, f"hf_b{b}_s": hf.seconds,
            f"fast_b{b}_tok_s": fast.tokens_per_second, f"fast_b{b}_tokens": fast.n_tokens, f"fast_b{b}_s": fast.seconds,
            f"fast_b{b}_same_as_hf": same / len(ps), f"fast_b{b}_mean_rows": fast.extra.get("mean_rows"),
            f"engine_vs_hf_b{b}": fast.tokens_per_second / hf.tokens_per_second,
        })
        if completions is None:
            completions = [cs[0].text for cs in fast_out]
    loop = HFEngine(model, tok, batch_size=1, progress=False)
    _, single = _timed(loop, ps[:n_loop], params)
    b0 = batches[0]
    ids = FastEngine(model, tok, progress=False).encode(ps)  # the prompt tokens both engines prefill
    res["gen_prompt_tokens"] = sum(len(x) for x in ids)
    res["gen_shared_prefix_tokens"] = len(os.path.commonprefix(ids))  # the chat template's system turn
    res.update({
        "loop_tok_s": single.tokens_per_second, "loop_tokens": single.n_tokens,
        # the earlier figures' names: HF generate at the first batch size against the loop
        "engine_tok_s": res[f"hf_b{b0}_tok_s"], "engine_tokens": res[f"hf_b{b0}_tokens"],
        "speedup": res[f"hf_b{b0}_tok_s"] / single.tokens_per_second,
        "fast_speedup_vs_loop": res[f"fast_b{b0}_tok_s"] / single.tokens_per_second,
        "engine_vs_hf_generate": res[f"engine_vs_hf_b{b0}"],
    })
    return res, list(zip(ps, completions))


def bench_scorer(model, tok, pairs, batch: int = 16) -> dict:
    """The log-prob scorer on (prompt, completion) pairs: prompt + response tokens a second."""
    from methods.core.scoring import encode_pairs, sequence_logprobs

    ps, rs = [p for p, _ in pairs], [r for _, r in pairs]
    n_tok = sum(len(ids) for ids, _ in encode_pairs(tok, ps, rs))
    sequence_logprobs(model, tok, ps[:2], rs[:2], batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    sequence_logprobs(model, tok, ps, rs, batch_size=batch)
    secs = time.perf_counter() - t0
    return {"scorer_tok_s": n_tok / secs, "scorer_tokens": n_tok, "scorer_batch": batch}


def bench_dpo(src, n_pairs: int, batch: int, resp_words: int) -> dict:
    import random

    from datasets import Dataset

    from methods.core.trainers.dpo import PreferenceDPOTrainer
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


def bench_ppo(src, n_updates: int, rollout_prompts: int, max_new: int) -> dict:
    """`n_updates` PPO updates with conf/trainer/ppo.yaml's settings (value head, 2 epochs) on the gold
    benchmark's prompts with the gold judge as reward; the first update is excluded (allocation)."""
    import csv

    from omegaconf import OmegaConf

    from methods.core.run import Run
    from methods.core.trainers.ppo.spec import PPOTrainerSpec
    from methods.data.ifeval_synth import IFEvalSynth
    from methods.judges.gold import GoldJudge
    from pathlib import Path

    conf = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "trainer" / "ppo.yaml").args
    conf.seed = 0
    args = {**OmegaConf.to_container(conf), "max_steps": n_updates, "rollout_prompts": rollout_prompts,
            "max_new_tokens": max_new, "save_steps": 10_000, "mini_batch_size": min(conf.mini_batch_size, rollout_prompts)}
    items = IFEvalSynth(seed=7, n_eval=rollout_prompts * n_updates).eval()
    rows = [{"id": it["id"], "prompt": it["instruction"], "item": it} for it in items]
    with tempfile.TemporaryDirectory() as d:
        run = Run(OmegaConf.create({"seed": 0}), d, src, data=None, judge=None, method=None, cache_dir=f"{d}/cache")
        PPOTrainerSpec(args=args).train(run, rows, "ppo", scorer=GoldJudge())
        with open(f"{d}/ppo/updates.csv") as f:
            ups = list(csv.DictReader(f))[1:]
    mean = lambda k: sum(float(u[k]) for u in ups) / len(ups)  # noqa: E731
    return {"ppo_rollout_tok_s": mean("rollout_tokens_per_s"), "ppo_rollout_gflops": mean("rollout_gflop_per_s"),
            "ppo_update_tok_s": mean("update_tokens_per_s"), "ppo_update_gflops": mean("update_gflop_per_s"),
            "ppo_s_per_update": mean("rollout_s") + mean("update_s"), "ppo_updates_timed": len(ups)}


def main(argv=None) -> dict:
    import torch
    import transformers
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (seconds on the tiny model)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    ap.add_argument("--batches", default=None, help="generation batch sizes, comma-separated (default 64,256; --quick 4,8)")
    ap.add_argument("--prompts", type=int, default=None, help="generation prompts (default 256; --quick 16)")
    ap.add_argument("--no-dpo", action="store_true", help="skip the DPO training figure")
    ap.add_argument("--no-ppo", action="store_true", help="skip the PPO rollout and update figures")
    ap.add_argument("--only-ppo", action="store_true", help="the matmul peak and the PPO figures only")
    a = ap.parse_args(argv)
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(os.cpu_count() or 1)
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"model={a.model}"])
    src = instantiate(cfg.model)
    model, tok = src.load()
    n_params = sum(p.numel() for p in model.parameters())  # tied embedding counted once: it is the LM head
    peak = matmul_peak(1024 if a.quick else 2048)
    batches = tuple(int(b) for b in (a.batches or ("4,8" if a.quick else "64,256")).split(","))
    n_prompts = a.prompts or (16 if a.quick else 256)
    ppo = {} if a.no_ppo else bench_ppo(src, 3, 4 if a.quick else 16, 8 if a.quick else 64)
    res = {"model": src.name, "threads": torch.get_num_threads(), "params": n_params, "matmul_peak_gflops": peak, **ppo}
    if ppo:
        res["ppo_rollout_peak_share"] = ppo["ppo_rollout_gflops"] / peak
        res["ppo_update_peak_share"] = ppo["ppo_update_gflops"] / peak
        print(f"PPO rollout (generate)      {ppo['ppo_rollout_tok_s']:8.1f} tok/s  ({100 * res['ppo_rollout_peak_share']:.1f}% "
              "of peak, generated tokens at 2·N)")
        print(f"PPO update (no-grad + train){ppo['ppo_update_tok_s']:8.1f} tok/s  ({100 * res['ppo_update_peak_share']:.1f}% "
              f"of peak, model FLOPs)  {ppo['ppo_s_per_update']:.1f} s per update")
    if a.only_ppo:
        return _write(res, a.out)
    gen, pairs = bench_generation(model, tok, n_prompts, 2 if a.quick else 4, 16 if a.quick else 64, batches)
    score = bench_scorer(model, tok, pairs)
    dpo = {} if a.no_dpo else bench_dpo(src, 8 if a.quick else 64, 4 if a.quick else 8, 20 if a.quick else 80)
    res.update({**gen, **score, **dpo})
    share = lambda tok_s, flops=2: tok_s * flops * n_params / (peak * 1e9)  # noqa: E731
    for b in batches:
        res[f"hf_b{b}_peak_share"] = share(gen[f"hf_b{b}_tok_s"])
        res[f"fast_b{b}_peak_share"] = share(gen[f"fast_b{b}_tok_s"])
    # every token through the model (prompts prefilled + tokens generated) at 2·N, and the ceiling that
    # sets: useful tokens/s at 100% of the peak with this prompt / answer mix
    all_per_useful = (gen["gen_prompt_tokens"] + gen[f"fast_b{batches[0]}_tokens"]) / gen[f"fast_b{batches[0]}_tokens"]
    for b in batches:
        res[f"hf_b{b}_peak_share_all_tokens"] = share(gen[f"hf_b{b}_tok_s"] * all_per_useful)
        res[f"fast_b{b}_peak_share_all_tokens"] = share(gen[f"fast_b{b}_tok_s"] * all_per_useful)
    res["gen_ceiling_tok_s"] = peak * 1e9 / (2 * n_params * all_per_useful)
    res["gen_ceiling_vs_hf"] = res["gen_ceiling_tok_s"] / gen[f"hf_b{batches[0]}_tok_s"]
    res["loop_peak_share"] = share(gen["loop_tok_s"])
    res["engine_peak_share"] = share(gen["engine_tok_s"])
    res["scorer_peak_share"] = share(score["scorer_tok_s"])
    print(f"model {src.name} ({n_params / 1e6:.1f}M params), {res['threads']} threads")
    print(f"fp32 matmul peak            {peak:8.1f} GFLOP/s")
    print(f"generation: {gen['gen_prompts']} prompts, greedy, max_new_tokens {gen['gen_max_new_tokens']}, "
          "EOS stops a sequence (useful tokens only)")
    for b in batches:
        print(f"HF generate, batch {b:<9d}{gen[f'hf_b{b}_tok_s']:8.1f} tok/s  ({100 * res[f'hf_b{b}_peak_share']:.1f}% of peak)")
        print(f"fast engine, batch {b:<9d}{gen[f'fast_b{b}_tok_s']:8.1f} tok/s  ({100 * res[f'fast_b{b}_peak_share']:.1f}% of peak)"
              f"  {100 * gen[f'fast_b{b}_same_as_hf']:.0f}% of completions identical to HF's")
    b0 = batches[0]
    print(f"counting prompt tokens too   prompts {gen['gen_prompt_tokens'] / gen['gen_prompts']:.1f} tokens on average "
          f"({gen['gen_shared_prefix_tokens']} shared by all), answers {gen[f'fast_b{b0}_tokens'] / gen['gen_prompts']:.1f}: "
          + ", ".join(f"HF b{b} {100 * res[f'hf_b{b}_peak_share_all_tokens']:.1f}% / fast b{b} "
                      f"{100 * res[f'fast_b{b}_peak_share_all_tokens']:.1f}%" for b in batches) + " of peak")
    print(f"ceiling at 100% of peak     {res['gen_ceiling_tok_s']:8.1f} tok/s  (= {res['gen_ceiling_vs_hf']:.2f}× HF generate "
          f"at batch {b0}: the most any fp32 engine can reach here)")
    print(f"one-prompt generate loop    {gen['loop_tok_s']:8.1f} tok/s  ({100 * res['loop_peak_share']:.1f}% of peak)")
    print(f"HF generate / loop          {gen['speedup']:8.2f}x   (batch {batches[0]}, target ≥ 8x)")
    print(f"fast engine / loop          {gen['fast_speedup_vs_loop']:8.2f}x   (batch {batches[0]})")
    others = "; ".join(f"batch {b}: {gen[f'engine_vs_hf_b{b}']:.2f}×" for b in batches[1:])
    print(f"engine/hf_generate: {gen['engine_vs_hf_generate']:.2f}×  (batch {batches[0]}" + (f"; {others})" if others else ")"))
    print(f"scorer (log-probs, batch {score['scorer_batch']}) {score['scorer_tok_s']:8.1f} tok/s  "
          f"({100 * res['scorer_peak_share']:.1f}% of peak at 2·N, prompt + response tokens)")
    if dpo:
        res["dpo_peak_share"] = share(dpo["dpo_tok_s"], 6)
        print(f"DPO training                {dpo['dpo_tok_s']:8.1f} tok/s  ({100 * res['dpo_peak_share']:.1f}% of peak, target ≥ 30%)"
              f"  {dpo['dpo_s_per_step']:.2f} s/step, {dpo['dpo_tokens_per_step']:.0f} tokens/step")
    return _write(res, a.out)


def _write(res: dict, out: str | None) -> dict:
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
