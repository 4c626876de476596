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
    judge = instantiate(cfg.judge)
    method = instantiate(cfg.method)
    run = Run(cfg, cfg.run_dir, model, data, judge, method, cache_dir=Path(cfg.paths.cache) / "artifacts")
    run.labeller = instantiate(cfg.data.labeller) if cfg.data.get("labeller") else None
    validate(run)
    return run


def validate(run: Run) -> None:
    """Cheap checks of everything a run will need; raises ConfigError naming the setting."""
    from methods.core.evaluation import eval_params
    from methods.core.pairs import label_sampling_params

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
    for part in (run.model_source, run.data, run.judge, run.method, run.labeller):
        if part is not None and hasattr(part, "validate"):
            part.validate(run) if _takes_run(part.validate) else part.validate()
    if cfg.get("trainer"):
        from methods.core.dpo import dpo_args

        try:
            _check_trainer_types(dpo_args(cfg.trainer, os.devnull))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"trainer.args: {e}") from None


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


def _check_trainer_types(args) -> None:
    """TRL takes a string where it wants a number and fails only inside the optimizer: refuse it here."""
    import dataclasses

    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        want = f.type if isinstance(f.type, type) else {"float": float, "int": int}.get(str(f.type))
        if want in (float, int) and isinstance(value, str):
            raise ValueError(f"{f.name}={value!r}: must be a number")
    report = args.report_to or []
    for name in [report] if isinstance(report, str) else report:
        if name == "tensorboard":
            from transformers.integrations import is_tensorboard_available

            if not is_tensorboard_available():
                raise ValueError("report_to=[tensorboard]: tensorboard is not installed (pip install tensorboard)")


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
    print(f"[{run.cfg.get('variant') or run.cfg.method.name}] win rate {_num(metrics['win_rate'])} ± "
          f"{_num(metrics['standard_error'])} (LC {_num(metrics['lc_win_rate'])}, {metrics.get('lc_mode')}) over "
          f"{metrics['n_total']} prompts; files in {run.dir.resolve()}:")
    for name in ("metrics.json", "model_outputs.json", "annotations.json"):
        print(f"  {run.dir / name}")
    return metrics


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def variant_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    task = list(HydraConfig.get().overrides.task)
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

    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    transformers.logging.set_verbosity_error()
    from methods.core.locks import hold

    configs = variant_configs(cfg) if cfg.get("variants") else {None: cfg}
    runs = {name: build_run(c) for name, c in configs.items()}  # every run validated before any work
    with hold(cfg.run_dir):  # a second copy of this command is refused, naming this process
        _launch(cfg, runs)


def _launch(cfg: DictConfig, runs: dict) -> None:
    results = {name: execute(run) for name, run in runs.items()}
    if cfg.get("variants"):
        from methods.core import leaderboard
        from methods.core.evaluation import evaluate_references

        root = Path(cfg.run_dir)
        first = next(iter(runs.values()))
        refs = evaluate_references(first, root / "references")  # one eval set and baseline for all variants
        dirs = {**{name: r.dir for name, r in runs.items()}, **{name: root / "references" for name in refs}}
        first.release()
        leaderboard.write({**results, **refs}, root / "leaderboard.csv", dirs)
