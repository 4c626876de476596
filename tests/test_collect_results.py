"""analysis.collect_results: the small files of a run copied with the command, and the code versions its
run.json files record named in COMMAND.md."""
from __future__ import annotations

import json

from analysis.collect_results import main, recorded_code


def _run(root, name, code):
    d = root / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"method": "dpo", **({"code": code} if code is not None else {})}))
    (d / "metrics.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"weights are not copied")


def test_command_md_names_every_recorded_commit(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    _run(runs, "a", [{"commit": "c1", "dirty": False}])
    _run(runs, "b", [{"commit": "c1", "dirty": False}, {"commit": "c2", "dirty": True}])
    assert recorded_code(runs) == "`c1`, `c2 + uncommitted changes`"
    assert main([str(runs), "--out", str(out), "--command", "python -m experiments.run"]) == 0
    text = (out / "COMMAND.md").read_text()
    assert "- git commit: `c1`, `c2 + uncommitted changes`\n" in text
    assert (out / "a" / "metrics.json").is_file() and not (out / "a" / "model.safetensors").exists()


def test_runs_without_a_record_fall_back(tmp_path):
    _run(tmp_path, "old", None)
    assert recorded_code(tmp_path) is None
