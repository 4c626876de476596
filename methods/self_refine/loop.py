"""The Self-Refine loop (Madaan et al., 2023) over any backend with `generate(prompts, params)`.

    round 0:  y0 = M(x) for every prompt (or given: the evaluation's greedy answers)
    round t:  f_t = M(p_feedback, x, y_t) for every prompt still refining;
              a prompt stops when f_t says no change is needed (unless it also gives a score
              below `stop_score`: then the score wins), or its score ≥ `stop_score`;
              the rest get y_{t+1} = M(p_refine, x, y_0, f_0, ..., y_t, f_t)
    after `max_rounds` refinements a prompt stops without further feedback.

Batched across prompts: each round makes one `generate` call for the feedback and one for the
refinements, each over the prompts still refining only. Feedback that gives neither a score nor a
no-change statement is *unparsable*: it is counted and logged, and the prompt is refined with the
raw text as the critique (the loop never fails on a model's wording). The answer a prompt keeps
is its last one. A refinement that comes back empty keeps the previous answer (counted as `n_empty`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from methods.core.generation import Completion, SamplingParams
from methods.self_refine.feedback import Feedback, parse_feedback
from methods.self_refine.prompts import PromptSet

log = logging.getLogger("selfalign")

STOP_NO_CHANGE, STOP_SCORE, STOP_MAX_ROUNDS = "no_change", "score", "max_rounds"


@dataclass
class Settings:
    max_rounds: int = 4  # refinements per prompt at most (the paper's limit)
    stop_score: float | None = 9.0  # on 0..score_scale; None: stop on "no change" or max_rounds only
    score_scale: float = 10.0
    answer: SamplingParams = field(default_factory=SamplingParams)
    feedback: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.7, max_new_tokens=96))
    refine: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.7))

    def at_round(self, params: SamplingParams, t: int, step: int) -> SamplingParams:
        # a seed per round and step, so sampled rounds differ from each other yet repeat exactly
        return replace(params, seed=params.seed + 1000 * (t + 1) + step)


@dataclass
class Step:
    """One prompt's answer at one round, and the feedback on it (None when none was asked)."""

    answer: str
    n_tokens: int
    feedback: Feedback | None = None
    stop: str | None = None  # why the loop stopped after this answer
    empty: bool = False  # the refinement came back empty; `answer` is the previous one


@dataclass
class RoundStats:
    round: int
    n_answers: int  # prompts that got a new answer in this round (all of them in round 0)
    n_feedback: int = 0  # feedback on this round's answers
    n_unparsable: int = 0
    n_stop_score: int = 0
    n_stop_no_change: int = 0
    n_empty: int = 0


@dataclass
class LoopResult:
    steps: list[list[Step]]  # steps[i][r]: prompt i's answer at round r (a prompt's rounds are 0..its last)
    rounds: list[RoundStats]

    def answers_at(self, r: int) -> list[Step]:
        """Each prompt's answer as of round r: its round-r answer, or its last one when it stopped earlier."""
        return [s[min(r, len(s) - 1)] for s in self.steps]

    @property
    def final(self) -> list[Step]:
        return [s[-1] for s in self.steps]


def _generate(backend: Any, prompts: list, params: SamplingParams) -> list[Completion]:
    outs = backend.generate(prompts, params)
    if len(outs) != len(prompts):
        raise RuntimeError(f"backend returned {len(outs)} results for {len(prompts)} prompts")
    return [cs[0] for cs in outs]


def clean_answer(text: str) -> str:
    """A refinement without a leading label the model may copy from the prompt ("Attempt 3:", "Answer:")."""
    import re

    return re.sub(r"^\W*(?:improved answer|new answer|revised answer|answer|attempt \d+)\s*:\s*", "",
                  (text or "").strip(), count=1, flags=re.I).strip()


def self_refine(backend: Any, instructions: Sequence[str], prompts: PromptSet, settings: Settings,
                initial: Sequence[Completion] | None = None) -> LoopResult:
    """Run the loop; `initial` are the y0 (else generated with `settings.answer`)."""
    instructions = list(instructions)
    if initial is None:
        initial = _generate(backend, instructions, settings.answer)
    if len(initial) != len(instructions):
        raise ValueError(f"{len(initial)} initial answers for {len(instructions)} prompts")
    steps = [[Step(c.text, c.n_tokens)] for c in initial]
    rounds = [RoundStats(0, n_answers=len(steps))]
    active = list(range(len(steps)))
    for t in range(settings.max_rounds):
        if not active:
            break
        stats = rounds[t]
        fb = _generate(backend, [prompts.feedback_messages(instructions[i], steps[i][t].answer) for i in active],
                       settings.at_round(settings.feedback, t, 1))
        going_on, unparsable = [], []
        for i, c in zip(active, fb):
            step = steps[i][t]
            step.feedback = f = parse_feedback(c.text, settings.score_scale)
            stats.n_feedback += 1
            if not f.parsed:
                stats.n_unparsable += 1
                unparsable.append(f.text)
            low = settings.stop_score is not None and f.score is not None and f.score < settings.stop_score
            if f.no_change and not low:  # "No changes needed. Score: 4/10": the score wins, refine on
                step.stop = STOP_NO_CHANGE
                stats.n_stop_no_change += 1
            elif settings.stop_score is not None and f.score is not None and f.score >= settings.stop_score:
                step.stop = STOP_SCORE
                stats.n_stop_score += 1
            else:
                going_on.append(i)
        if unparsable:
            log.warning("self-refine round %d: %d of %d feedbacks unparsable (no score, no 'no change'); "
                        "refining those with the raw text. First: %r", t, len(unparsable), len(active),
                        unparsable[0][:200])
        log.info("self-refine round %d: %d stop on score, %d on 'no change', %d refined", t, stats.n_stop_score,
                 stats.n_stop_no_change, len(going_on))
        active = going_on
        if not active:
            break
        histories = [[(s.answer, s.feedback.text) for s in steps[i]] for i in active]  # y0, f0, ..., yt, ft
        new = _generate(backend, [prompts.refine_messages(instructions[i], h) for i, h in zip(active, histories)],
                        settings.at_round(settings.refine, t, 2))
        stats = RoundStats(t + 1, n_answers=len(active))
        for i, c in zip(active, new):
            text = clean_answer(c.text)
            if text:
                steps[i].append(Step(text, c.n_tokens))
            else:
                steps[i].append(Step(steps[i][-1].answer, steps[i][-1].n_tokens, empty=True))
                stats.n_empty += 1
        rounds.append(stats)
    for i in active:
        steps[i][-1].stop = STOP_MAX_ROUNDS
    return LoopResult(steps, rounds)
