"""`method=self_refine`: Self-Refine (Madaan et al., arXiv 2303.17651), the inference-time baseline.

No training: the base model (or an API model, `method.backend`) answers each eval prompt, critiques
its answer with a score, and rewrites it, for at most `max_rounds` rounds (see `loop.py`). Stages:

- `refine/`: the loop on the eval set. `rounds.jsonl` has one row per prompt and round (answer,
  feedback, parsed score, no-change flag, why it stopped, prompt version); `prompts.json` the prompt
  version and file hash; `summary.json` the settings and per-round counts.
- the result: the final answers as the policy's inference procedure (`Policy.respond`), and one
  iteration per round r = 0..last round run, whose policy answers with round r's answers. The
  pipeline evaluates them (stages `round<r>_eval/`, then `eval/`). A prompt that stopped earlier
  keeps its last answer, so round r's metrics are those of running the method with `max_rounds = r`.
  `respond` answers the eval items refined here and refuses any other item.

Iteration stats: `still_refining`, the share of prompts whose round-r answer is new (1.0 at round 0);
`n_unparsable`, feedbacks on round r's answers that gave neither a score nor a no-change statement;
stops on score / "no change" there.

y0 is the evaluation's own greedy answer of the base model, i.e. the baseline's outputs when the
data has no reference outputs (round 0 then scores 50 by construction), else generated with the
evaluation's sampling settings.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from methods.core.contract import Iteration, MethodResult, Policy, stored_answers
from methods.data.interface import ReferenceOutputs
from methods.self_refine.prompts import DEFAULT_VERSION

def _plain(x) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else dict(x or {})


@dataclass
class SelfRefine:
    name: str = "self_refine"
    max_rounds: int = 4  # paper: at most 4 refinements
    stop_score: float | None = 9.0  # stop when the feedback's score reaches it (0..score_scale); null: never
    score_scale: float = 10.0
    prompt_version: str = DEFAULT_VERSION  # methods/self_refine/prompts/<version>.yaml
    feedback: Any = field(default_factory=lambda: {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 96})
    # max_new_tokens null: the evaluation's answer budget, so refined answers are no longer than others'
    refine: Any = field(default_factory=lambda: {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": None})
    backend: Any = None  # None: the run's base model; else an object with generate(prompts, params)

    # ---- settings -----------------------------------------------------------------------------
    def settings(self, run):
        from methods.core.evaluation import eval_params
        from methods.core.generation import SamplingParams
        from methods.self_refine.loop import Settings

        answer = eval_params(run)

        def params(group: str, spec) -> SamplingParams:
            spec = {"seed": run.cfg.seed, **_plain(spec)}
            if spec.get("max_new_tokens") is None:
                spec["max_new_tokens"] = answer.max_new_tokens
            if spec.get("n", 1) != 1:
                raise ValueError(f"method.{group}.n={spec['n']}: Self-Refine keeps one sample per step")
            try:
                return SamplingParams(**spec)
            except (TypeError, ValueError) as e:
                raise ValueError(f"method.{group}: {e}") from None

        return Settings(max_rounds=self.max_rounds, stop_score=self.stop_score, score_scale=self.score_scale,
                        answer=answer, feedback=params("feedback", self.feedback),
                        refine=params("refine", self.refine))

    def validate(self, run) -> None:
        """Cheap checks only: no model, no network."""
        from methods.self_refine.prompts import load_prompts

        if not isinstance(self.max_rounds, int) or isinstance(self.max_rounds, bool) or self.max_rounds < 0:
            raise ValueError(f"method.max_rounds={self.max_rounds!r}: must be an integer ≥ 0")
        if not self.score_scale > 0:
            raise ValueError(f"method.score_scale={self.score_scale!r}: must be > 0")
        if self.stop_score is not None and not 0 <= self.stop_score <= self.score_scale:
            raise ValueError(f"method.stop_score={self.stop_score!r}: must be in [0, {self.score_scale}] or null")
        load_prompts(self.prompt_version)
        self.settings(run)
        if self.backend is not None:
            if not callable(getattr(self.backend, "generate", None)):
                raise ValueError(f"method.backend: {type(self.backend).__name__} has no generate(prompts, params)")
            if hasattr(self.backend, "validate"):
                self.backend.validate()

    # ---- the run ------------------------------------------------------------------------------
    def __call__(self, run) -> MethodResult:
        from methods.core.evaluation import eval_items
        from methods.core.io import read_json
        from methods.self_refine.prompts import load_prompts

        items = eval_items(run)
        prompts = load_prompts(self.prompt_version)
        d = run.stage("refine", lambda d: self._refine(run, items, prompts, d))
        answers = _answers_by_round(_read_rounds(d / "rounds.jsonl"), [it["id"] for it in items])
        summary = read_json(d / "summary.json")
        final = Policy(run.base_model_path, respond=stored_answers(items, answers[-1], self.name))
        iterations = [
            Iteration(f"round{r}", r, {
                "still_refining": stats["n_answers"] / max(len(items), 1),
                "n_unparsable": stats["n_unparsable"],
                "n_stop_score": stats["n_stop_score"],
                "n_stop_no_change": stats["n_stop_no_change"],
            }, final if r == len(answers) - 1
                else Policy(run.base_model_path, respond=stored_answers(items, comps, self.name)))
            for r, (comps, stats) in enumerate(zip(answers, summary["rounds"]))
        ]
        return MethodResult(final, {
            "prompt_version": summary["prompts"]["version"],
            "prompt_sha256": summary["prompts"]["sha256"],
            "max_rounds": self.max_rounds,
            "stop_score": self.stop_score,
            "mean_refinements": summary["mean_refinements"],
            "stop_reasons": summary["stop_reasons"],
            "n_unparsable": sum(s["n_unparsable"] for s in summary["rounds"]),
        }, iterations, labelled_pairs=0)

    def _refine(self, run, items: list[dict], prompts, d) -> None:
        from methods.core.evaluation import baseline_outputs
        from methods.core.generation import Completion
        from methods.core.io import atomic_write_json, atomic_write_jsonl
        from methods.self_refine.loop import self_refine

        settings = self.settings(run)
        base = baseline_outputs(run, items)  # needed for every round's evaluation anyway
        initial = None
        if self.backend is None and not isinstance(run.eval_data, ReferenceOutputs):
            # the baseline is the base model's greedy answer at the evaluation's settings: exactly y0
            initial = [Completion(b["output"], b["n_tokens"], b["n_tokens"] < settings.answer.max_new_tokens)
                       for b in base]
        backend = self.backend if self.backend is not None else run.engine(run.base_model_path)
        res = self_refine(backend, [it["instruction"] for it in items], prompts, settings, initial)
        rows = []
        for it, steps in zip(items, res.steps):
            for r, s in enumerate(steps):
                f = s.feedback
                rows.append({
                    "id": it["id"], "round": r, "answer": s.answer, "n_tokens": s.n_tokens,
                    "empty_refinement": s.empty,
                    "feedback": f.text if f else None, "critique": f.critique if f else None,
                    "feedback_raw": f.raw if f and f.raw != f.text else None,  # when an invented turn was cut
                    "score": f.score if f else None, "no_change": f.no_change if f else None,
                    "parsed": f.parsed if f else None, "stop": s.stop, "prompt_version": prompts.version,
                })
        atomic_write_jsonl(d / "rounds.jsonl", rows)
        atomic_write_json(d / "prompts.json", {
            **prompts.describe(),
            "feedback_chat": prompts.feedback_messages("{instruction}", "{answer}"),
            "refine_chat": prompts.refine_messages("{instruction}", [("{answer_1}", "{feedback_1}")]),
        })
        atomic_write_json(d / "summary.json", {
            "prompts": prompts.describe(),
            "settings": asdict(settings),
            "backend": getattr(self.backend, "name", type(self.backend).__name__) if self.backend is not None
            else run.model_source.name,
            "rounds": [asdict(r) for r in res.rounds],
            "stop_reasons": dict(Counter(s.stop for s in res.final)),
            "mean_refinements": sum(len(s) - 1 for s in res.steps) / max(len(res.steps), 1),
        })


def _read_rounds(path) -> list[dict]:
    from methods.core.io import read_rows

    return read_rows(path, {"id": str, "round": int, "answer": str, "n_tokens": int})


def _answers_by_round(rows: list[dict], ids: list[str]):
    """answers[r][k]: prompt k's Completion as of round r (its last one when it stopped earlier)."""
    from methods.core.generation import Completion

    per: dict[str, dict[int, dict]] = {}
    for row in rows:
        per.setdefault(row["id"], {})[row["round"]] = row
    if set(per) != set(ids):
        raise RuntimeError("refine/rounds.jsonl does not cover the eval set: delete the run's refine/ stage")
    n_rounds = max(r for rs in per.values() for r in rs) + 1
    out = []
    for r in range(n_rounds):
        row = [per[i][min(r, max(per[i]))] for i in ids]
        out.append([Completion(x["answer"], x["n_tokens"], True) for x in row])
    return out
