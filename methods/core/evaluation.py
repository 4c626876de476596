"""Evaluation in AlpacaEval format: a policy's outputs on the eval set, judged against a baseline.

Writes, in the stage directory and again at the top of the run directory:
- `model_outputs.json`: [{instruction, output, generator, dataset, id, n_tokens}] (alpaca_eval format);
- `annotations.json`: [{instruction, output_1 (baseline), output_2 (policy), generator_1, generator_2,
  annotator, preference, index}], preference 2 = the policy's output is better;
- `metrics.json`: win rate, standard error, LC win rate, average length, counts (see
  `methods.core.winrate.summarize`), plus the judge's mean score of the policy when it has one.
"""
from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

from methods.core.generation import SamplingParams
from methods.core.io import atomic_write_json, read_json
from methods.data.interface import ReferenceOutputs
from methods.judges.base import Scorer

ARTIFACTS = ("model_outputs.json", "annotations.json", "metrics.json")


def eval_items(run) -> list[dict]:
    items = run.eval_data.eval()
    n = run.cfg.eval.n_instructions
    return items[:n] if n else items


def eval_params(run, seed: int | None = None) -> SamplingParams:
    e = run.cfg.eval
    return SamplingParams(n=1, temperature=e.temperature, top_p=e.top_p, max_new_tokens=e.max_new_tokens,
                          seed=run.cfg.seed if seed is None else seed)


def generate_outputs(run, items: list[dict], model_path: str | None, generator: str,
                     params: SamplingParams | None = None) -> list[dict]:
    outs = run.engine(model_path).generate([it["instruction"] for it in items], params or eval_params(run))
    return output_rows(run, items, [cs[0] for cs in outs], generator)


def output_rows(run, items: list[dict], completions, generator: str) -> list[dict]:
    """alpaca_eval `model_outputs` rows: one Completion per item."""
    return [
        {
            "instruction": it["instruction"],
            "output": c.text,
            "generator": generator,
            "dataset": run.eval_data_name,
            "id": it["id"],
            "n_tokens": c.n_tokens,
        }
        for it, c in zip(items, completions)
    ]


def baseline_outputs(run, items: list[dict]) -> list[dict]:
    """The baseline's outputs: given by the data set (e.g. AlpacaEval's reference), else the base model's."""
    if isinstance(run.eval_data, ReferenceOutputs):
        return run.eval_data.reference_outputs(items)
    from methods.core.pairs import hash_texts

    name = f"{run.model_source.name}-sft"
    params = eval_params(run, seed=run.data_seed)  # shared by every run on this data, whatever its seed
    key = {
        "model": run.model_source.describe(),
        "ids": [it["id"] for it in items],
        "instructions_hash": hash_texts(it["instruction"] for it in items),
        "params": vars(params),
        "engine": run.engine_key(),
    }
    # the evaluation's work: not charged to the methods that read it (Self-Refine's and PIT's y_0)
    d = run.cached("baseline_outputs", key,
                   lambda d: atomic_write_json(d / "model_outputs.json", generate_outputs(run, items, None, name, params)),
                   charge=False)
    return read_json(d / "model_outputs.json")


def evaluate(run, policy, stage: str = "eval", generator: str | None = None) -> dict:
    """Evaluate a `Policy` (methods.core.contract) on the eval set in stage `run.dir/<stage>`; returns the
    metrics (also written there). The pipeline is the only caller: the final policy, then the iterations.

    A policy with `respond` answers the items itself (Self-Refine's rounds); its answers are judged as they
    are. Otherwise its weights generate with the eval settings; the base model's weights reuse the
    baseline's outputs (they are the same greedy answers).
    """
    from methods.core.run import run_stage

    generator = generator or run.cfg.get("variant") or run.cfg.method.name

    def work(d: Path) -> None:
        items = eval_items(run)
        base = baseline_outputs(run, items)
        if policy.respond is not None:
            completions = policy.respond(items)
            if len(completions) != len(items):
                raise ValueError(f"stage {stage}: {len(completions)} outputs for {len(items)} eval items")
            outputs = output_rows(run, items, completions, generator)
        elif policy.weights == run.base_model_path and not isinstance(run.eval_data, ReferenceOutputs):
            outputs = [{**o, "generator": generator} for o in base]  # the SFT policy is the baseline
        else:
            outputs = generate_outputs(run, items, policy.weights, generator)
        judge_outputs(run, items, base, outputs, d, stage)

    d = run_stage(run.dir / stage, work, stage)
    return read_json(d / "metrics.json")


def judge_outputs(run, items: list[dict], base: list[dict], outputs: list[dict], d: Path, stage: str) -> dict:
    """Judge `outputs` against the baseline's; writes model_outputs.json, annotations.json, metrics.json in d."""
    from methods.core.winrate import summarize

    generator = outputs[0]["generator"] if outputs else None
    atomic_write_json(d / "model_outputs.json", outputs)
    prefs = run.judge.compare(items, [b["output"] for b in base], [o["output"] for o in outputs])
    annotations = [
        {
            "instruction": it["instruction"],
            "output_1": b["output"],
            "output_2": o["output"],
            "generator_1": b["generator"],
            "generator_2": generator,
            "annotator": run.judge.name,
            "preference": p,
            "index": k,
        }
        for k, (it, b, o, p) in enumerate(zip(items, base, outputs, prefs))
    ]
    atomic_write_json(d / "annotations.json", annotations)
    metrics = summarize(annotations, lc_difficulty(run, items))
    metrics["avg_tokens"] = sum(o.get("n_tokens") or 0 for o in outputs) / max(len(outputs), 1)
    if isinstance(run.judge, Scorer):
        metrics["judge_score"] = _mean(run.judge.score(items, [o["output"] for o in outputs]))
        metrics["baseline_judge_score"] = _mean(run.judge.score(items, [b["output"] for b in base]))
    metrics["generator"] = generator
    metrics["annotator"] = run.judge.name
    metrics["judge_version"] = getattr(run.judge, "version", None)
    metrics["annotations_file"] = f"{stage}/annotations.json" if stage else "annotations.json"
    atomic_write_json(d / "metrics.json", metrics)
    return metrics


def lc_difficulty(run, items: list[dict]):
    """The LC GLM's instruction difficulty: where the data set names an annotation pool (`data.lc_pool`,
    AlpacaEval) that is present, alpaca_eval's official table if cached locally, else the pooled
    estimate; otherwise None, i.e. `lc_mode: no_difficulty` (every metrics.json names its mode)."""
    pool = run.eval_data_cfg.get("lc_pool")
    if not pool:
        return None
    return _difficulty(str(pool), tuple(it["instruction"] for it in items if isinstance(it["instruction"], str)))


@lru_cache(maxsize=2)
def _difficulty(pool: str, instructions: tuple[str, ...]):
    import logging

    from methods.core.winrate import pick_difficulty

    return pick_difficulty(None, pool, list(instructions), logging.getLogger("selfalign").info)


# answers that ignore the request, scored beside every method so a judge being gamed shows at once
DEGENERATE = {
    "ref_empty": lambda it: "",
    "ref_echo": lambda it: it["instruction"] if isinstance(it["instruction"], str) else str(it["instruction"]),
}


def evaluate_references(run, out_dir: Path) -> dict[str, dict]:
    """Metrics of each degenerate reference against the run's baseline, in out_dir/<name>/ (a stage each;
    each metrics' `annotations_file` is relative to out_dir)."""
    from methods.core.run import run_stage

    items = eval_items(run)
    out = {}
    for name, make in DEGENERATE.items():
        def work(d: Path, make=make, name=name) -> None:
            outputs = [{"instruction": it["instruction"], "output": make(it), "generator": name,
                        "dataset": run.eval_data_name, "id": it["id"], "n_tokens": 0} for it in items]
            judge_outputs(run, items, baseline_outputs(run, items), outputs, d, name)

        d = run_stage(Path(out_dir) / name, work)
        out[name] = {**read_json(d / "metrics.json"), "method": "reference"}
    return out


def publish(run, stage_dir: Path, extra: dict | None = None) -> dict:
    """Copy an evaluation's files to the top of the run directory; `extra` joins metrics.json."""
    for name in ARTIFACTS[:2]:
        shutil.copyfile(stage_dir / name, run.dir / f".{name}.tmp")
        (run.dir / f".{name}.tmp").replace(run.dir / name)
    metrics = {**read_json(stage_dir / "metrics.json"), **(extra or {})}
    atomic_write_json(run.dir / "metrics.json", metrics)
    return metrics


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")
