"""From a composed config to finished runs: build and validate every part first, then execute.

Validation instantiates only light objects (data splits, judge, method, trainer arguments); no model
is loaded and nothing is generated until every run of the command has passed it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from methods.core.io import atomic_write_json, atomic_write_text
from methods.core.run import Run

log = logging.getLogger("selfalign")

# keys of the `data` group that the suite reads itself; the rest are the data class's arguments
DATA_SUITE_KEYS = ("name", "labeller", "label_sampling")
# settings that may change between a run and its resumption without changing its results
# (generation.batch_size may not: the engine seeds each batch, so it changes the samples)
VOLATILE_KEYS = ("paths", "threads", "run_dir", "variants")
VOLATILE_GENERATION_KEYS = ("progress",)


class ConfigError(ValueError):
    pass


def _without(node: DictConfig, keys) -> DictConfig:
    d = OmegaConf.to_container(node, resolve=True)
    return OmegaConf.create({k: v for k, v in d.items() if k not in keys})


def build_run(cfg: DictConfig) -> Run:
    from hydra.utils import instantiate

    model = instantiate(cfg.model)
    data = instantiate(_without(cfg.data, DATA_SUITE_KEYS))
    judge = instantiate(cfg.judge)
    method = instantiate(cfg.method)
    run = Run(cfg, cfg.run_dir, model, data, judge, method, cache_dir=Path(cfg.paths.cache) / "artifacts")
    run.labeller = instantiate(cfg.data.labeller) if cfg.data.get("labeller") else None
    validate(run)
    return run


def validate(run: Run) -> None:
    """Cheap checks of everything a run will need; raises ConfigError naming the setting."""
    from methods.core.evaluation import eval_params
    from methods.core.generation import SamplingParams

    cfg = run.cfg
    try:
        if cfg.data.get("label_sampling"):
            SamplingParams(**cfg.data.label_sampling)
        eval_params(run)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sampling settings: {e}") from None
    for part in (run.model_source, run.data, run.judge, run.method, run.labeller):
        if part is not None and hasattr(part, "validate"):
            part.validate(run) if _takes_run(part.validate) else part.validate()
    if cfg.get("trainer"):
        from methods.core.dpo import dpo_args

        try:
            dpo_args(cfg.trainer, os.devnull)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"trainer.args: {e}") from None


def _takes_run(fn) -> bool:
    import inspect

    return len(inspect.signature(fn).parameters) >= 1


def pinned_config(cfg: DictConfig) -> dict:
    """The resolved config minus what may change on resumption; paths stay symbolic, so a moved
    cache (`SELFALIGN_CACHE`, `paths.cache`) does not make a run look like another config."""
    c = OmegaConf.to_container(cfg, resolve=False)
    paths = {k: f"<paths.{k}>" for k in c.get("paths") or {}}
    for k in VOLATILE_KEYS:
        c.pop(k, None)
    c["paths"] = paths
    for k in VOLATILE_GENERATION_KEYS:
        (c.get("generation") or {}).pop(k, None)
    pinned = OmegaConf.to_container(OmegaConf.create(c), resolve=True)
    pinned.pop("paths")
    return pinned


def check_resume(run: Run) -> None:
    """A run directory belongs to one config: refuse to mix results of two configs in one place."""
    text = OmegaConf.to_yaml(OmegaConf.create(pinned_config(run.cfg)))
    path = run.dir / "config.yaml"
    if path.exists() and path.read_text() != text:
        import difflib

        diff = "".join(difflib.unified_diff(path.read_text().splitlines(True), text.splitlines(True), "on disk", "now", n=0))
        raise ConfigError(
            f"{run.dir} holds a run made with another config; results are never overwritten. "
            f"Choose another run_dir=..., or delete that directory.\n{diff}"
        )
    atomic_write_text(path, text)


def execute(run: Run) -> dict:
    from methods.core.evaluation import evaluate, publish

    run.dir.mkdir(parents=True, exist_ok=True)
    check_resume(run)
    atomic_write_json(run.dir / "run.json", run.describe())
    result = run.method(run)
    evaluate(run, result.policy)
    metrics = publish(run, run.dir / "eval", {**result.metrics, "method": run.cfg.method.name, "variant": run.cfg.get("variant")})
    run.release()
    print(f"[{run.cfg.get('variant') or run.cfg.method.name}] win rate {metrics['win_rate']:.1f} ± {metrics['standard_error']:.1f}"
          f" (LC {metrics['lc_win_rate']:.1f}) over {metrics['n_total']} prompts; files in {run.dir.resolve()}:")
    for name in ("metrics.json", "model_outputs.json", "annotations.json"):
        print(f"  {run.dir / name}")
    return metrics


LEADERBOARD_COLUMNS = [
    "variant", "method", "iteration", "win_rate", "standard_error", "lc_win_rate", "avg_length", "judge_score",
    "self_label_accuracy", "noisy_share", "still_refining", "n_total", "n_pairs",
]


def leaderboard_rows(results: dict[str, dict]) -> list[dict]:
    """One row per variant (its final policy), preceded by one per entry of its `iterations` list.

    Iterative methods (SPA's iterations, Self-Refine's rounds) report per-step metrics as
    `metrics["iterations"] = [{"iteration": i, "win_rate": ..., ...}, ...]`.
    """
    rows = []
    for name, m in results.items():
        for it in m.get("iterations") or []:
            rows.append({"variant": name, "method": m.get("method"), **it})
        rows.append({"variant": name, **{k: v for k, v in m.items() if k != "iterations"}, "iteration": "final"})
    return rows


def leaderboard(results: dict[str, dict], out: Path):
    import pandas as pd

    df = pd.DataFrame(leaderboard_rows(results)).reindex(columns=LEADERBOARD_COLUMNS)
    df = df.dropna(axis=1, how="all")  # columns no method reported
    atomic_write_text(out, df.to_csv(index=False))
    print("\n" + df.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.2f}"))
    print(f"\nleaderboard: {out.resolve()}")
    return df


def variant_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    task = list(HydraConfig.get().overrides.task)
    root = cfg.run_dir
    out = {}
    for name, overrides in cfg.variants.items():
        out[name] = compose("config", overrides=task + list(overrides) + [f"variant={name}", f"run_dir={root}/{name}"])
    return out


def launch(cfg: DictConfig) -> None:
    import torch
    import transformers

    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    transformers.logging.set_verbosity_error()
    configs = variant_configs(cfg) if cfg.get("variants") else {None: cfg}
    runs = {name: build_run(c) for name, c in configs.items()}  # every run validated before any work
    results = {name: execute(run) for name, run in runs.items()}
    if cfg.get("variants"):
        leaderboard(results, Path(cfg.run_dir) / "leaderboard.csv")
