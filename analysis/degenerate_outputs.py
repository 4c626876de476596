"""Write alpaca_eval-format outputs files of answers that ignore the request, for the ifeval_synth eval set.

    python -m analysis.degenerate_outputs --out DIR [--seed 0] [--n-eval 200]

One file per answer: const_yes ("yes?"), const_title_ok ("<<t>>\\n\\nok?", v1's best constant),
empty (""), const_sentence (a polite sentence that says nothing), echo (the prompt itself). Score
them with `python -m experiments.evaluate outputs=DIR/<name>.json ...`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONSTANTS = {
    "const_yes": "yes?",
    "const_title_ok": "<<t>>\n\nok?",
    "empty": "",
    "const_sentence": "Sure! Here is my answer. I hope this helps you with your question today. Good luck!",
}


def main(argv=None) -> int:
    from methods.data.ifeval_synth import IFEvalSynth

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-eval", type=int, default=200)
    args = ap.parse_args(argv)
    items = IFEvalSynth(seed=args.seed, n_eval=args.n_eval).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    answers = {**{k: (lambda it, v=v: v) for k, v in CONSTANTS.items()}, "echo": lambda it: it["instruction"]}
    for name, make in answers.items():
        rows = [{"instruction": it["instruction"], "output": make(it), "generator": name} for it in items]
        (args.out / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1))
        print(args.out / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
