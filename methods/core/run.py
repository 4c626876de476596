"""A run: its directory, its stages, and the shared pieces a method plugin works with.

A method is a callable `method(run) -> MethodResult` (see `methods.core.contract`). It does its work
in stages:

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

from methods.core import budget
from methods.core.io import atomic_write_json, read_json

log = logging.getLogger("selfalign")

DONE = "_done.json"


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Run:
    """Holds the composed config and instantiated parts; heavy objects load on first use."""

    def __init__(self, cfg, run_dir: str | Path, model, data, judge, method, cache_dir: str | Path,
                 eval_data=None, labeler=None, gold=None):
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.model_source = model
        self.data = data  # the training data: labelled pool, seed, unlabelled pools
        self.eval_data = eval_data if eval_data is not None else data  # the eval set's data (`eval.data`)
        self.judge = judge  # the evaluation's judge
        self.method = method
        self.labeler = labeler  # who labels a method's samples (`labeler=`), when the method declares one
        self.gold = gold  # the data set's gold labeller (its "human" labels, `data.labeller`), if any
        self.cache_dir = Path(cache_dir)
        self._engines: dict[str, Any] = {}

    # ---- stages -------------------------------------------------------------------------------
    def stage(self, name: str, fn: Callable[[Path], Any], all_ranks: bool = False) -> Path:
        """A method's stage `run.dir/<name>`; `all_ranks`: every process runs `fn` (training), else the
        main one only, the others waiting for it. The pipeline's own stages are refused here."""
        from methods.core.contract import reserved

        if reserved(name):
            raise ValueError(f"stage {name!r} is the pipeline's (evaluations, references): a method returns its "
                             "policies in MethodResult and the pipeline evaluates them")
        return run_stage(self.dir / name, fn, name, all_ranks=all_ranks)

    def cached(self, kind: str, key: dict, fn: Callable[[Path], Any], charge: bool = True) -> Path:
        """A directory shared by every run with the same `key`; built once by `fn(tmp_dir)` (another
        process building the same entry is waited for). `charge`: its build counts in the budget of the
        stage that uses it (methods.core.budget); false for the evaluation's own work."""
        from methods.core import dist
        from methods.core.locks import hold

        d = self.cache_dir / kind / config_hash(key)
        if not dist.is_main():  # the main process builds it
            dist.wait_for(d / DONE, f"cache entry {kind}", ready=lambda: check_manifest(d) is None)
            return d
        d.parent.mkdir(parents=True, exist_ok=True)
        with hold(d.parent, wait=True, name=f".{d.name}.lock"):
            if (d / DONE).exists() and (problem := check_manifest(d)) is not None:
                log.warning("%s: %s; building it again", d, problem)
                shutil.rmtree(d)
            if (d / DONE).exists():
                log.info("%s: reusing %s", kind, d)
            else:
                _build(d, kind, key, fn)
            if charge:
                budget.reuse(read_json(d / DONE).get("budget"))  # the user's budget, whoever built it
        return d

    # ---- shared parts -------------------------------------------------------------------------
    @property
    def data_seed(self) -> int:
        """Seeds what every run on this data shares: splits, eval set, the labelled pool's samples and
        the baseline's outputs (`data.seed`, fixed by default). The run's `seed` varies the rest."""
        return self.cfg.data.get("seed", self.cfg.seed)

    @property
    def eval_data_cfg(self):
        """The eval set's data config: `eval.data` when given (any data set's eval split), else `data`."""
        return self.cfg.eval.get("data") or self.cfg.data

    @property
    def eval_data_name(self) -> str:
        return self.eval_data_cfg.name

    @cached_property
    def base_model_path(self) -> str:
        return self.model_source.path()

    def engine(self, model_path: str | None = None):
        """The generation engine for a policy directory (default: the base model)."""
        from methods.core.generation import HFEngine, VLLMEngine

        path = model_path or self.base_model_path
        if path not in self._engines:
            self._engines.clear()  # one policy in memory at a time
            gcfg = self.cfg.generation
            if gcfg.backend == "vllm":
                self._engines[path] = VLLMEngine(path)
            else:
                model, tok = self.model_source.load(path)
                if gcfg.backend == "fast":
                    from methods.core.fast_engine import FastEngine

                    self._engines[path] = FastEngine(model, tok, batch_size=gcfg.batch_size, progress=gcfg.progress)
                else:
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
            "eval_data": self.eval_data_name,
            "seed": self.cfg.seed,
            "data_seed": self.data_seed,
            "seed_fraction": self.cfg.data.get("seed_fraction"),
        }


def _build(d: Path, kind: str, key: dict, fn: Callable[[Path], Any]) -> None:
    """Build a cache entry in `<d>.partial`, record its budget and files, then move it to `d`."""
    tmp = d.with_name(d.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # an unfinished build of a killed run
    tmp.mkdir(parents=True)
    atomic_write_json(tmp / "key.json", key)
    with budget.frame() as spent:
        fn(tmp)
    atomic_write_json(tmp / DONE, {"kind": kind, "seconds": spent["seconds"], "budget": spent, "files": manifest(tmp)})
    log.info("%s: built in %.1f s", kind, spent["seconds"])
    if d.exists():  # a stale, unfinished copy
        shutil.rmtree(d)
    tmp.rename(d)


def run_stage(d: Path, fn: Callable[[Path], Any], name: str | None = None, all_ranks: bool = False) -> Path:
    """Run `fn(d)` unless `d` holds a finished stage whose files still match its `_done.json`; a stage
    whose files changed is moved aside to `<name>.stale-<time>` and run again. `name` (default: the
    folder's) is what the log and `_done.json` call it. Under several processes only the main one runs
    `fn` and writes `_done.json` (with `all_ranks`, every rank runs `fn` and `fn` writes on the main
    one only); the others wait for `_done.json`."""
    from methods.core import dist

    name = name or d.name
    if not dist.is_main():
        # join the main's training unless the stage is finished and intact (the main then skips it too)
        if all_ranks and not ((d / DONE).exists() and check_manifest(d) is None):
            fn(d)
        dist.wait_for(d / DONE, f"stage {name}", ready=lambda: check_manifest(d) is None)
        return d
    if (d / DONE).exists():
        problem = check_manifest(d)
        if problem is None:
            log.info("stage %s: finished earlier, skipped", name)
            return d
        stale = d.with_name(f"{d.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        log.warning("stage %s: %s; moved to %s and run again", name, problem, stale.name)
        d.rename(stale)
    d.mkdir(parents=True, exist_ok=True)
    log.info("stage %s: running", name)
    t0 = time.perf_counter()
    with budget.frame() as spent:
        fn(d)
    atomic_write_json(d / DONE, {"stage": name, "seconds": round(time.perf_counter() - t0, 1), "budget": spent,
                                 "files": manifest(d)})
    return d


HASH_LIMIT = 64 << 20  # files above this (weights) are checked by size only


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(d: Path) -> dict[str, dict]:
    """relative path -> {size, sha256 (files up to HASH_LIMIT)} of every file a finished stage holds."""
    out = {}
    for f in sorted(p for p in d.rglob("*") if p.is_file() and p.name != DONE):
        size = f.stat().st_size
        out[str(f.relative_to(d))] = {"size": size, **({"sha256": _sha256(f)} if size <= HASH_LIMIT else {})}
    return out


def check_manifest(d: Path) -> str | None:
    """None if the stage's files are as its _done.json recorded them, else what differs (naming the file)."""
    done = read_json(d / DONE)
    for rel, want in (done.get("files") or {}).items():
        f = d / rel
        if not f.is_file():
            return f"{f} is missing"
        if f.stat().st_size != want["size"]:
            return f"{f} has {f.stat().st_size} bytes, {want['size']} when the stage finished"
        if "sha256" in want and _sha256(f) != want["sha256"]:
            return f"{f} changed since the stage finished (sha256)"
    return None
