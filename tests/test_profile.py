"""analysis.profile: seconds per stage from the stages' _done.json."""
from __future__ import annotations

import json

import pytest

from analysis.profile import profile


def test_profile_reads_stage_seconds(tmp_path):
    for run, stage, sec in (("sft", "eval", 2.0), ("dpo", "pairs", 6.0), ("dpo", "train", 12.0)):
        (tmp_path / run / stage).mkdir(parents=True)
        (tmp_path / run / "run.json").write_text("{}")
        (tmp_path / run / stage / "_done.json").write_text(json.dumps({"stage": stage, "seconds": sec}))
    (tmp_path / "references" / "ref_empty").mkdir(parents=True)
    (tmp_path / "references" / "ref_empty" / "_done.json").write_text(json.dumps({"stage": "ref_empty"}))
    df = profile(tmp_path)
    assert list(zip(df["run"], df["stage"], df["seconds"])) == [("dpo", "pairs", 6.0), ("dpo", "train", 12.0),
                                                                ("sft", "eval", 2.0)]
    assert df["share"].tolist() == pytest.approx([0.3, 0.6, 0.1])


def test_stage_kinds_and_the_per_kind_table(tmp_path):
    """A stage with a trainer's train_metrics.json is train whatever its name; the others by name; the
    per-kind table sums each run's seconds per kind, with totals per run and over all runs."""
    from analysis.profile import by_kind

    for stage, sec in (("iter1_samples", 5.0), ("iter1_labels", 1.0), ("rm0_scores", 2.0), ("rl_0", 30.0),
                       ("gap_train", 10.0), ("iter1_eval", 4.0), ("odd", 1.0)):
        (tmp_path / "m" / stage).mkdir(parents=True)
        (tmp_path / "m" / stage / "_done.json").write_text(json.dumps({"stage": stage, "seconds": sec}))
    (tmp_path / "m" / "run.json").write_text("{}")
    (tmp_path / "m" / "rl_0" / "train_metrics.json").write_text("{}")
    (tmp_path / "m" / "gap_train" / "train_metrics.json").write_text("{}")
    df = profile(tmp_path)
    assert dict(zip(df["stage"], df["kind"])) == {"iter1_samples": "sample", "iter1_labels": "label",
                                                  "rm0_scores": "score", "rl_0": "train", "gap_train": "train",
                                                  "iter1_eval": "evaluate", "odd": "other"}
    t = by_kind(df).set_index("run")
    assert t.loc["m", "train"] == 40.0 and t.loc["m", "sample"] == 5.0 and t.loc["m", "total"] == 53.0
    assert list(t.columns) == ["sample", "label", "score", "train", "evaluate", "other", "total"]


def test_one_row_per_preset(tmp_path):
    from analysis.profile import presets

    for exp, stage, sec in (("a", "iter1_samples", 3.0), ("a", "eval", 1.0), ("b", "eval", 2.0)):
        d = tmp_path / exp / "default" / "m" / stage
        d.mkdir(parents=True)
        (d.parent / "run.json").write_text("{}")
        (d / "_done.json").write_text(json.dumps({"stage": stage, "seconds": sec}))
    t = presets([tmp_path / "a" / "default", tmp_path / "b" / "default"]).set_index("experiment")
    assert t.loc["a", "sample"] == 3.0 and t.loc["a", "total"] == 4.0 and t.loc["a", "sample_share"] == 0.75
    assert t.loc["b", "evaluate"] == 2.0 and t.loc["b", "train"] == 0.0
