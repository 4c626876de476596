"""An estimate (not a measurement) of experiment=compare_paper's GPU cost, per row, for one seed.

    python -m analysis.gpu_cost [--out DIR]

FLOPs from token counts: a forward pass costs 2·N per token, forward + backward 6·N (8·N with gradient
checkpointing, which the 7B presets turn on); trained and scored tokens run at `MFU` of an A100's bf16
peak; sampled tokens at `DECODE_TOK_S` a GPU (vLLM-class batched decoding of a 7B model) or, inside
PPO's rollouts (the suite's HF engine), at `PPO_DECODE_TOK_S`. Token counts come from the preset
(sizes, max_new_tokens, epochs, PPO updates and rollouts) and the typical lengths below; every number
here is an assumption to replace with a measured one on the cluster that runs the preset.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

N = 7.24e9  # zephyr-7b-sft-full's parameters
PEAK, MFU = 312e12, 0.40  # A100 bf16 dense peak; a typical fraction reached by DPO/RM training at 7B
DECODE_TOK_S, PPO_DECODE_TOK_S = 2000.0, 500.0
PROMPT, ANSWER = 150, 300  # UltraFeedback prompt and answer tokens (typical)
SEED, ALL, POOLS = 2000, 60_900, 58_000  # seed pairs, the cleaned set's pairs, 8K + 20K + 30K prompts
EVALS = 30  # policies AlpacaEval 2.0 judges per seed: 10 rows + iterations and rounds


def hours_compute(flops: float) -> float:
    return flops / (PEAK * MFU) / 3600


def hours_decode(tokens: float, rate: float = DECODE_TOK_S) -> float:
    return tokens / rate / 3600


def dpo(pairs: float, length: float = PROMPT + ANSWER, extra_forwards: int = 0) -> float:
    """Two sequences a pair: trained with checkpointing (8N), the reference precomputed (2N), plus
    `extra_forwards` no-grad passes (SPA's de-coupled noise detection: 2)."""
    return 2 * length * pairs * N * (8 + 2 + 2 * extra_forwards)


def rows() -> list[dict]:
    seq = PROMPT + ANSWER
    ser_pool = (ALL - SEED) * 0.95  # SER's pool: the labelled pairs beyond the seed, 5% held out
    ppo = {  # updates, rollouts an update, new tokens, PPO epochs, passes besides the policy's (2N each)
        "ser": (20_000, 8, 128, 4, 2),  # reference, RM; the critic is the policy's value head
        "pit": (2 * 2000, 64, 256, 4, 6),  # two rounds; reference, gap model, and a separate critic (6N)
    }
    out = {}
    out["dpo_seed"] = hours_compute(dpo(SEED * 3))
    out["dpo_all"] = hours_compute(dpo(ALL * 3))
    sampled = POOLS * 2 * ANSWER
    out["iterdpo_judge"] = out["dpo_seed"] + hours_decode(sampled) + hours_compute(dpo(POOLS))
    scoring = 2 * N * (POOLS * 2 * seq) * 2  # two models score every sample (π_{i-1} and SFT)
    out["spa"] = out["dpo_seed"] + hours_decode(sampled) + hours_compute(scoring + dpo(POOLS, extra_forwards=2))
    rm = 2 * 8 * N * 512  # a pair: two sequences of up to 512 tokens, trained with checkpointing
    ser_rms = 4 * rm * (SEED + ser_pool) * 2  # 4 RMs on at most seed + pool pairs, 2 epochs (an upper bound)
    ser_scoring = 4 * 2 * N * ser_pool * 2 * seq
    out["sso"] = (hours_decode(8000 * 2 * 500 + POOLS * 2 * 500) + hours_compute(dpo(8000, 650) + dpo(POOLS, 650)))
    for name, (updates, batch, new, epochs, passes) in ppo.items():
        tokens = updates * batch * (PROMPT + new + (ANSWER if name == "pit" else 0))
        flops = tokens * N * (8 * epochs + 2 * passes)
        out[name] = hours_decode(updates * batch * new, PPO_DECODE_TOK_S) + hours_compute(flops)
    out["ser"] += hours_compute(ser_rms + ser_scoring)
    out["self_refine"] = hours_decode(805 * 4 * 2 * 400) + hours_compute(2 * N * 805 * 4 * 2 * 3000)
    out["evaluation"] = EVALS * hours_decode(805 * 500)
    return [{"row": k, "a100_hours": round(v, 1)} for k, v in out.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import pandas as pd

    df = pd.DataFrame(rows())
    df = pd.concat([df, pd.DataFrame([{"row": "total", "a100_hours": round(df["a100_hours"].sum(), 1)}])])
    print(df.to_string(index=False))
    if args.out:
        from analysis.runs import write_table

        write_table(df, args.out, "gpu_cost", "compare_paper: estimated A100-hours for one seed (not measured)",
                    __doc__.strip().splitlines()[2].strip() + " See analysis/gpu_cost.py for every assumption.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
