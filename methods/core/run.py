"""A run: its directory, its stages, and the shared pieces a method plugin works with.

A method is a callable `method(run) -> policy_path`. It does its work in stages:

    pairs_dir = run.stage("pairs", lambda d: ...write files into d...)

A stage writes into `run.dir/<name>/` and is marked finished by `_done.json`, written last and
atomically; re-running the same command skips finished stages, and an interrupted stage runs again
(the DPO stage resumes from its last checkpoint). Work that several runs share (the SFT model's
samples, the baseline's outputs) goes through `run.cached`, keyed by everything it depends on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from methods.core.io import atomic_write_json, read_json

log = logging.getLogger("selfalign")

DONE = "_done.json"


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Run:
    """Holds the composed config and instantiated parts; heavy objects load on first use."""

    def __init__(self, cfg, run_dir: str | Path, model, data, judge, method, cache_dir: str | Path):
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.model_source = model
        self.data = data
        self.judge = judge
        self.method = method
        self.cache_dir = Path(cache_dir)
        self._engines: dict[str, Any] = {}

    # ---- stages -------------------------------------------------------------------------------
    def stage(self, name: str, fn: Callable[[Path], Any]) -> Path:
        d = self.dir / name
        if (d / DONE).exists():
            log.info("stage %s: finished earlier, skipped", name)
            return d
        d.mkdir(parents=True, exist_ok=True)
        log.info("stage %s: running", name)
        t0 = time.perf_counter()
        fn(d)
        atomic_write_json(d / DONE, {"stage": name, "seconds": round(time.perf_counter() - t0, 1)})
        return d

    def cached(self, kind: str, key: dict, fn: Callable[[Path], Any]) -> Path:
        """A directory shared by every run with the same `key`; built once by `fn(tmp_dir)`."""
        d = self.cache_dir / kind / config_hash(key)
        if (d / DONE).exists():
            log.info("%s: reusing %s", kind, d)
            return d
        tmp = d.with_name(d.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        atomic_write_json(tmp / "key.json", key)
        fn(tmp)
        atomic_write_json(tmp / DONE, {"kind": kind})
        if d.exists():  # a stale, unfinished copy
            shutil.rmtree(d)
        tmp.rename(d)
        return d

    # ---- shared parts -------------------------------------------------------------------------
    @property
    def data_seed(self) -> int:
        """Seeds what every run on this data shares: splits, eval set, the labelled pool's samples and
        the baseline's outputs (`data.seed`, fixed by default). The run's `seed` varies the rest."""
        return self.cfg.data.get("seed", self.cfg.seed)

    @cached_property
    def base_model_path(self) -> str:
        return self.model_source.path()

    def engine(self, model_path: str | None = None):
        """The generation engine for a policy directory (default: the base model)."""
        from methods.core.generation import HFEngine, VLLMEngine, vllm_available

        path = model_path or self.base_model_path
        if path not in self._engines:
            self._engines.clear()  # one policy in memory at a time
            gcfg = self.cfg.generation
            if gcfg.backend == "vllm" or (gcfg.backend == "auto" and vllm_available()):
                self._engines[path] = VLLMEngine(path)
            else:
                model, tok = self.model_source.load(path)
                self._engines[path] = HFEngine(model, tok, batch_size=gcfg.batch_size, progress=gcfg.progress)
        return self._engines[path]

    def engine_key(self) -> dict:
        """Generation settings that change samples (the HF engine seeds each batch): for cache keys."""
        g = self.cfg.generation
        return {"backend": g.backend, "batch_size": g.batch_size}

    def release(self) -> None:
        self._engines.clear()

    def describe(self) -> dict:
        return {
            "method": self.cfg.method.name,
            "variant": self.cfg.get("variant"),
            "experiment": self.cfg.get("experiment_name"),
            "model": self.model_source.name,
            "data": self.cfg.data.name,
            "seed": self.cfg.seed,
            "data_seed": self.data_seed,
            "seed_fraction": self.cfg.data.get("seed_fraction"),
        }


def load_done(d: Path) -> dict | None:
    return read_json(d / DONE) if (d / DONE).exists() else None


class MethodResult:
    """What a method hands back: the final policy directory and metrics that join metrics.json."""

    def __init__(self, policy: str, metrics: dict | None = None):
        self.policy = policy
        self.metrics = metrics or {}
