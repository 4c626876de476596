"""Judge outputs made elsewhere: `python -m experiments.evaluate outputs=PATH [data=… judge=… eval=…] [run_dir=…]`.

PATH is an alpaca_eval `model_outputs.json`: a list of {instruction, output, generator, id?}. Rows are
matched to the configured eval set by id when every row has one, else by instruction; a file that
misses an eval prompt, names one the eval set does not have, or repeats one is refused, naming the
first such row, before any model loads. The outputs are judged against the eval set's baseline (the
base model's greedy outputs, or the data set's reference) with the configured judge, as a run's
final evaluation is, and `model_outputs.json`, `annotations.json` and `metrics.json` (the same keys
as a run's) are written under run_dir (default runs/evaluate/<file stem>-<hash of its path>) and
printed, together with the degenerate references (empty answer, prompt echo) under the same judge.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from experiments import run as _run  # noqa: F401  (registers the default_subdir resolver)

OmegaConf.register_new_resolver(
    "outputs_dirname",
    lambda p: f"{Path(p).stem}-{hashlib.sha256(str(Path(p).resolve()).encode()).hexdigest()[:8]}",
    replace=True,
)


def _key(instruction) -> str:
    return instruction if isinstance(instruction, str) else json.dumps(instruction, sort_keys=True)


def read_outputs(path: str | Path) -> list[dict]:
    from methods.core.io import DataError, read_rows

    rows = read_rows(path, {"instruction": (str, list), "output": str})
    for i, row in enumerate(rows, start=1):
        if "id" in row and not isinstance(row["id"], (str, int)):
            raise DataError(f"{path}, row {i}: 'id' must be a string or an integer")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def match_outputs(rows: list[dict], items: list[dict], path: str | Path) -> list[dict]:
    """The rows in eval-set order; raises DataError naming the first unknown, repeated or missing prompt."""
    from methods.core.io import DataError

    by_id = all("id" in r for r in rows)
    key = (lambda r: str(r["id"])) if by_id else (lambda r: _key(r["instruction"]))
    item_key = (lambda it: str(it["id"])) if by_id else (lambda it: _key(it["instruction"]))
    wanted = {item_key(it) for it in items}
    seen: dict[str, dict] = {}
    what = "id" if by_id else "instruction"
    for i, r in enumerate(rows, start=1):
        k = key(r)
        if k not in wanted:
            raise DataError(f"{path}, row {i}: {what} {k[:120]!r} is not in the eval set ({len(items)} prompts)")
        if k in seen:
            raise DataError(f"{path}, row {i}: {what} {k[:120]!r} appears twice")
        seen[k] = r
    for it in items:
        if item_key(it) not in seen:
            raise DataError(f"{path}: no output for eval prompt {item_key(it)[:120]!r} "
                            f"({len(items) - len(seen)} of {len(items)} missing)")
    return [seen[item_key(it)] for it in items]


def evaluate_file(cfg) -> dict:
    from experiments.pipeline import build_run, check_resume
    from methods.core.evaluation import baseline_outputs, eval_items, evaluate_references, judge_outputs
    from methods.core.io import atomic_write_json, read_json

    run = build_run(cfg)
    path = Path(cfg.outputs)
    items = eval_items(run)
    rows = match_outputs(read_outputs(path), items, path)  # every check before any model loads
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    info = {**run.describe(), "outputs": str(path.resolve()), "outputs_sha256": sha}
    run.dir.mkdir(parents=True, exist_ok=True)
    check_resume(run)
    previous = run.dir / "run.json"
    if previous.exists() and read_json(previous).get("outputs_sha256") != sha:
        raise ValueError(f"{run.dir} holds the evaluation of another version of {path}; results are never "
                         "overwritten. Choose another run_dir=..., or delete that directory.")
    atomic_write_json(previous, info)
    generator = rows[0].get("generator") or path.stem
    outputs = [{"instruction": it["instruction"], "output": r["output"], "generator": r.get("generator", generator),
                "dataset": run.eval_data_name, "id": it["id"], "n_tokens": r.get("n_tokens")} for it, r in zip(items, rows)]
    metrics = judge_outputs(run, items, baseline_outputs(run, items), outputs, run.dir, "")
    metrics["references"] = {name: {k: m.get(k) for k in ("win_rate", "standard_error", "judge_score", "avg_length")}
                             for name, m in evaluate_references(run, run.dir / "references").items()}
    atomic_write_json(run.dir / "metrics.json", metrics)
    run.release()
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with open_dict(cfg):  # as experiments.run: the run directory is Hydra's output directory
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    metrics = evaluate_file(cfg)
    print(json.dumps(metrics, indent=2, default=str))
    print(f"files in {Path(cfg.run_dir).resolve()}: metrics.json, annotations.json, model_outputs.json")


if __name__ == "__main__":
    main()
