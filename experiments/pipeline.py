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
DATA_SUITE_KEYS = ("name", "labeller", "label_sampling", "lc_pool")
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
    eval_data = instantiate(_without(cfg.eval.data, DATA_SUITE_KEYS)) if cfg.eval.get("data") else None
    judge = instantiate(cfg.judge)
    gold = instantiate(cfg.data.labeller) if cfg.data.get("labeller") else None
    _validate_parts(model, data, eval_data, judge, gold)  # before the method's trainers import TRL (seconds)
    method = instantiate(cfg.method)
    labeler = instantiate(cfg.labeler) if cfg.get("labeler") else None
    run = Run(cfg, cfg.run_dir, model, data, judge, method, cache_dir=Path(cfg.paths.cache) / "artifacts",
              eval_data=eval_data, labeler=labeler, gold=gold)
    validate(run)
    return run


def validate(run: Run) -> None:
    """Cheap checks of everything a run will need; raises ConfigError naming the setting."""
    from methods.core.evaluation import eval_params
    from methods.core.pairs import label_sampling_params
    from methods.core.settings import check_types

    cfg = run.cfg
    try:
        if cfg.data.get("label_sampling"):
            label_sampling_params(cfg.data, 0)
            if not isinstance(cfg.data.label_sampling.get("drop_unfinished", True), bool):
                raise ValueError("data.label_sampling.drop_unfinished: must be true or false")
        eval_params(run)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sampling settings: {e}") from None
    _check_settings(cfg)
    try:
        check_types(run.method, "method")
        check_types(run.labeler, "labeler")
        run.method.validate(run)  # it validates its own trainers and labeler
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def _validate_parts(*parts) -> None:
    """The model source, data sets, judge and gold labeller check themselves (files, keys, sizes)."""
    try:
        for part in parts:
            if part is not None and hasattr(part, "validate"):
                part.validate()
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


BACKENDS = ("hf", "vllm", "fast")


def _check_settings(cfg: DictConfig) -> None:
    """Settings the suite itself reads, checked before anything is built (each names itself)."""
    n = cfg.eval.get("n_instructions")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"eval.n_instructions={n!r}: null (the whole eval set) or an integer >= 1")
    g = cfg.generation
    if g.backend not in BACKENDS:
        raise ConfigError(f"generation.backend={g.backend!r}: choose one of {list(BACKENDS)}")
    if isinstance(g.batch_size, bool) or not isinstance(g.batch_size, int) or g.batch_size < 1:
        raise ConfigError(f"generation.batch_size={g.batch_size!r}: an integer >= 1")


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


def write_run_json(run: Run) -> None:
    """run.json: what the run is (method, model, data, seeds) and the code it was made with, every commit
    this directory has seen (methods.core.provenance)."""
    from methods.core.io import read_json
    from methods.core.provenance import at_start, code_history

    path = run.dir / "run.json"
    previous = read_json(path).get("code") if path.exists() else None
    atomic_write_json(path, {**run.describe(), "code": code_history(previous, at_start())})


def execute(run: Run) -> dict:
    from methods.core import dist

    if dist.is_main():
        run.dir.mkdir(parents=True, exist_ok=True)
        check_resume(run)
        write_run_json(run)
    result = run.method(run)
    metrics = evaluate_result(run, result)
    run.release()
    if dist.is_main():
        print(f"[{run.cfg.get('variant') or run.cfg.method.name}] win rate {_num(metrics['win_rate'])} ± "
              f"{_num(metrics['standard_error'])} (LC {_num(metrics['lc_win_rate'])}, {metrics.get('lc_mode')}) over "
              f"{metrics['n_total']} prompts; files in {run.dir.resolve()}:")
        for name in ("metrics.json", "model_outputs.json", "annotations.json"):
            print(f"  {run.dir / name}")
    return metrics


def evaluate_result(run: Run, result) -> dict:
    """The one evaluation of a method's result: its policy (stage `eval`), then each iteration's policy
    (stage `<label>_eval`; the final policy's iteration reuses `eval`); metrics.json gets the method's
    metrics and one row per iteration (its stats and its evaluation's scalars)."""
    from methods.core import dist
    from methods.core.evaluation import evaluate, publish

    prefix = run.cfg.get("variant") or run.cfg.method.name
    labels = [it.label for it in result.iterations]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method {run.cfg.method.name}: iteration labels repeat ({labels}); each names a stage")
    final = evaluate(run, result.policy)
    rows = []
    for it in result.iterations:
        m = {}
        if it.policy == result.policy:
            m = final
        elif it.policy is not None:
            m = evaluate(run, it.policy, stage=f"{it.label}_eval", generator=f"{prefix}_{it.label}")
        rows.append({"iteration": it.index, **{k: v for k, v in m.items() if k != "generator"}, **it.stats})
    from methods.core.budget import spent

    extra = {**result.metrics, "method": run.cfg.method.name, "variant": run.cfg.get("variant"),
             "budget_labelled_pairs": result.labelled_pairs, **spent(run.dir)}
    if rows:
        extra["iterations"] = rows
    if not dist.is_main():  # the main process writes the run's files
        return {**final, **extra}
    return publish(run, run.dir / "eval", extra)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def variant_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    task = list(hydra_cfg.overrides.task)
    # a plugin's config folder given on the command line (hydra.searchpath) must serve the variants too
    task += [o for o in hydra_cfg.overrides.hydra if o.startswith("hydra.searchpath=")]
    root = cfg.run_dir
    out = {}
    for name, overrides in cfg.variants.items():
        # quoted: an automatic run directory holds "=" and "," (runs/demo/seed=1), which the override
        # grammar would otherwise parse
        run_dir = f"{root}/{name}".replace("\\", "\\\\").replace("'", "\\'")
        out[name] = compose("config", overrides=task + list(overrides) + [f"variant={name}", f"run_dir='{run_dir}'"])
    return out


def launch(cfg: DictConfig) -> None:
    import torch
    import transformers

    from methods.core import dist
    from methods.core.locks import hold
    from methods.core.provenance import at_start

    at_start()  # the code as the command starts, what every run of it records
    dist.check_launch()
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // dist.world_size()))
    transformers.logging.set_verbosity_error()
    configs = variant_configs(cfg) if cfg.get("variants") else {None: cfg}
    runs = {name: build_run(c) for name, c in configs.items()}  # every run validated before any work
    if not dist.is_main():  # the main process holds the lock; the others follow its stages
        return _launch(cfg, runs)
    with hold(cfg.run_dir):  # a second copy of this command is refused, naming this process
        _launch(cfg, runs)


def _launch(cfg: DictConfig, runs: dict) -> None:
    from methods.core import dist

    results = {name: execute(run) for name, run in runs.items()}
    if cfg.get("variants") and dist.is_main():
        from methods.core import leaderboard
        from methods.core.evaluation import evaluate_references

        root = Path(cfg.run_dir)
        first = next(iter(runs.values()))
        refs = evaluate_references(first, root / "references")  # one eval set and baseline for all variants
        dirs = {**{name: r.dir for name, r in runs.items()}, **{name: root / "references" for name in refs}}
        first.release()
        leaderboard.write({**results, **refs}, root / "leaderboard.csv", dirs)
