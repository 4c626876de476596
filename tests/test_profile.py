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
