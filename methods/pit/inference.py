"""PIT's inference procedure: the policy answers, the improver rewrites its answer, round after round.

    y_0 = M_P(x);   y_{t+1} = M_PIT(x, y_t)   for t < n_rounds

batched over the prompts still improving. A prompt stops when its rewrite comes back empty, or when the
stop rule rejects the rewrite; it then keeps its last accepted answer for every later round, so round t's
answers are those of running with `n_rounds = t`. Stop rules (`method.stop`):

    none       every prompt runs every round (the paper reports quality is not monotonic over 5)
    unchanged  the rewrite equals the answer it rewrote
    gap        the gap model sees no improvement: r_gap(x, y_{t+1}, y_t) <= r_gap(x, y_t, y_t)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

STOP_RULES = ("none", "unchanged", "gap")


@dataclass
class Answer:
    text: str
    n_tokens: int
    finished: bool = True
    stop: str | None = None  # why the prompt stopped after this answer (set on the answer it keeps)


@dataclass
class RoundStats:
    round: int
    n_rewritten: int  # prompts whose rewrite was accepted in this round (0 at round 0: y_0 is no rewrite)
    n_rejected: int = 0  # rewrites the stop rule turned down
    n_empty: int = 0


def iterate(improve: Callable[[list, list[str]], list], instructions: Sequence, y0: Sequence, n_rounds: int,
            reject: Callable[[list, list[str], list[str]], list[bool]] | None = None):
    """`improve(instructions, answers) -> completions` (text, n_tokens, finished); `reject(instructions,
    answers, rewrites) -> [bool]` (True: keep the answer and stop). Returns (rounds, stats): rounds[t][k]
    is prompt k's answer as of round t (t = 0..n_rounds)."""
    current = [Answer(c.text, c.n_tokens, c.finished) for c in y0]
    rounds, stats, active = [list(current)], [RoundStats(0, 0)], list(range(len(current)))
    for t in range(1, n_rounds + 1):
        st = RoundStats(t, 0)
        if active:
            outs = improve([instructions[k] for k in active], [current[k].text for k in active])
            if len(outs) != len(active):
                raise RuntimeError(f"improver returned {len(outs)} answers for {len(active)} prompts")
            texts = [o.text.strip() for o in outs]
            by_k = dict(zip(active, zip(texts, outs)))
            empty = {k for k, s in zip(active, texts) if not s}
            nonempty = [k for k in active if k not in empty]
            turned = set()
            if reject is not None and nonempty:
                verdict = reject([instructions[k] for k in nonempty], [current[k].text for k in nonempty],
                                 [by_k[k][0] for k in nonempty])
                turned = {k for k, v in zip(nonempty, verdict) if v}
            st.n_empty, st.n_rejected = len(empty), len(turned)
            still = []
            for k in active:
                if k in empty or k in turned:
                    current[k] = Answer(current[k].text, current[k].n_tokens, current[k].finished,
                                        "empty" if k in empty else "rejected")
                else:
                    text, o = by_k[k]
                    current[k] = Answer(text, o.n_tokens, o.finished)
                    still.append(k)
            st.n_rewritten = len(still)
            active = still
        rounds.append(list(current))
        stats.append(st)
    return rounds, stats


def unchanged_rule(instructions, answers, rewrites) -> list[bool]:
    return [a.strip() == r.strip() for a, r in zip(answers, rewrites)]


def gap_rule(gap) -> Callable:
    """Reject a rewrite the gap model does not score above the answer against itself."""

    def reject(instructions, answers, rewrites) -> list[bool]:
        items = [{"instruction": x, "y_ref": a} for x, a in zip(instructions, answers)]
        new = gap.score(items, list(rewrites))
        same = gap.score(items, list(answers))
        return [n <= s for n, s in zip(new, same)]

    return reject
