"""The budget a run's stages record (methods.core.budget): counted once, nested stages and cache builds
apart, a reused cache entry's build charged to every user, the pipeline's evaluations left out."""
from __future__ import annotations

import time

from methods.core import budget
from methods.core.io import read_json
from methods.core.run import Run, run_stage


def _run(tmp_path, name="r"):
    return Run(cfg=None, run_dir=tmp_path / name, model=None, data=None, judge=None, method=None,
               cache_dir=tmp_path / "cache")


def test_nested_stages_and_cache_add_up_without_double_counting(tmp_path):
    run = _run(tmp_path)

    def build(d):
        budget.count(generated_tokens=100)
        (d / "x").write_text("x")

    def inner(d):
        budget.count(generated_tokens=5, optimizer_steps=2)

    def outer(d):
        budget.count(generated_tokens=10)
        run.cached("samples", {"k": 1}, build)
        run_stage(d / "inner", inner)
        budget.count(optimizer_steps=3)

    run.stage("outer", outer)
    out = read_json(run.dir / "outer" / "_done.json")["budget"]
    assert (out["generated_tokens"], out["optimizer_steps"], out["reused_generated_tokens"]) == (10, 3, 100)
    assert read_json(run.dir / "outer" / "inner" / "_done.json")["budget"]["generated_tokens"] == 5
    # a pipeline stage is not the method's budget
    run_stage(run.dir / "eval", lambda d: budget.count(generated_tokens=1000))
    s = budget.spent(run.dir)
    assert (s["budget_generated_tokens"], s["budget_optimizer_steps"]) == (115, 5)

    # a second run reusing the entry is charged its build, though it generated nothing
    other = _run(tmp_path, "other")
    other.stage("use", lambda d: other.cached("samples", {"k": 1}, build))
    assert budget.spent(other.dir)["budget_generated_tokens"] == 100


def test_a_nested_stage_time_is_not_the_outer_stage_own_time(tmp_path):
    def outer(d):
        run_stage(d / "inner", lambda d: time.sleep(0.3))

    run_stage(tmp_path / "outer", outer)
    own = read_json(tmp_path / "outer" / "_done.json")["budget"]["seconds"]
    inner = read_json(tmp_path / "outer" / "inner" / "_done.json")["budget"]["seconds"]
    assert inner >= 0.3 and own < 0.1
    assert budget.spent(tmp_path)["budget_seconds"] == round(own + inner, 1)


def test_counts_outside_a_stage_are_dropped():
    budget.count(generated_tokens=7)  # no frame open: nothing to charge, no error
    with budget.frame() as f:
        budget.count(generated_tokens=7)
    assert f["generated_tokens"] == 7


def test_an_uncharged_cache_entry_counts_for_nobody(tmp_path):
    run = _run(tmp_path)

    def build(d):
        budget.count(generated_tokens=50)

    run.stage("a", lambda d: run.cached("baseline_outputs", {"k": 2}, build, charge=False))  # built here
    run.stage("b", lambda d: run.cached("baseline_outputs", {"k": 2}, build, charge=False))  # reused
    assert budget.spent(run.dir)["budget_generated_tokens"] == 0
