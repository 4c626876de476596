"""`python -m experiments.evaluate outputs=PATH`: outputs made elsewhere, judged like a run's (tiny model).

The tiny random model's greedy outputs are the baseline. Under gold v2 they are byte soup and score 0,
so here the degenerate answers (empty, a constant, the prompt echoed) can only tie with them: they
score 0 and never win a prompt, while on-topic answers written from each item beat the baseline on
every prompt. (Against SmolLM2's outputs the degenerate answers lose: README, results/gold_v2/.)
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.evaluate import match_outputs
from methods.core.io import DataError
from methods.data.ifeval_synth import IFEvalSynth

REPO = Path(__file__).resolve().parents[1]
ARGS = ["model=tiny_llama", "data.n_eval=6", "eval.max_new_tokens=8", "generation.progress=false", "threads=1"]


def good_answer(it: dict) -> str:
    """On topic and long enough; lowercase and comma-free, so it meets some constraints too."""
    if it["family"] == "list":
        from methods.data.ifeval_synth.lexicon import category

        members = category(it["category"]).members[: it["n_items"]]
        return f"here are {it['n_items']} of them: " + " and ".join(members) + " are the ones i would name first."
    return (f"about {it['subject']}: start small and keep at it every day. "
            f"think about the {' and the '.join(it['keywords'])} and you will do well.")


def _evaluate(tmp_path: Path, name: str, rows: list[dict]) -> dict:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(rows))
    out = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"outputs={path}", *ARGS,
                          f"paths.cache={tmp_path}/cache", f"paths.runs={tmp_path}/runs"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = next((tmp_path / "runs" / "evaluate").glob(f"{name}-*"))
    for f in ("metrics.json", "annotations.json", "model_outputs.json"):
        assert (run_dir / f).is_file()
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_degenerate_answers_never_win_and_on_topic_answers_do(tmp_path):
    items = IFEvalSynth(n_eval=6).eval()
    files = {
        "empty": [{"instruction": it["instruction"], "output": "", "generator": "empty"} for it in items],
        "constant": [{"instruction": it["instruction"], "output": "yes?", "generator": "c"} for it in items],
        "echo": [{"instruction": it["instruction"], "output": it["instruction"], "generator": "e", "id": it["id"]}
                 for it in items],
        "good": [{"instruction": it["instruction"], "output": good_answer(it), "generator": "g"} for it in items[::-1]],
    }
    m = {name: _evaluate(tmp_path, name, rows) for name, rows in files.items()}
    for name in ("empty", "constant", "echo"):
        assert m[name]["judge_score"] == 0.0 and m[name]["n_wins"] == 0, name
        assert m[name]["win_rate"] <= 50.0
    assert m["good"]["n_wins"] == 6 and m["good"]["win_rate"] == 100.0  # rows in reverse order: matched
    assert m["good"]["judge_score"] > 0.4 > m["good"]["baseline_judge_score"] == 0.0
    assert m["good"]["judge_version"] == "gold-v2" and m["good"]["lc_mode"] == "no_difficulty"
    assert set(m["good"]["references"]) == {"ref_empty", "ref_echo"}


def test_rows_are_matched_and_bad_files_refused(tmp_path):
    items = IFEvalSynth(n_eval=3).eval()
    rows = [{"instruction": it["instruction"], "output": "x"} for it in items]
    assert match_outputs(rows[::-1], items, "f") == rows
    by_id = [{"instruction": "anything", "output": str(k), "id": it["id"]} for k, it in enumerate(items)]
    assert [r["output"] for r in match_outputs(by_id[::-1], items, "f")] == ["0", "1", "2"]
    with pytest.raises(DataError, match=r"f: no output for eval prompt .*1 of 3 missing"):
        match_outputs(rows[:2], items, "f")
    with pytest.raises(DataError, match=r"f, row 4: instruction 'not in the set' is not in the eval set"):
        match_outputs([*rows, {"instruction": "not in the set", "output": ""}], items, "f")
    with pytest.raises(DataError, match="row 2: .* appears twice"):
        match_outputs([rows[0], rows[0], rows[1], rows[2]], items, "f")


def test_a_bad_file_fails_before_any_model_loads(tmp_path):
    path = tmp_path / "outs.json"
    path.write_text(json.dumps([{"instruction": "Hello?", "output": "hi"}]))
    out = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"outputs={path}", *ARGS,
                          f"paths.cache={tmp_path}/cache", f"paths.runs={tmp_path}/runs"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "row 1: instruction 'Hello?' is not in the eval set" in out.stderr
    assert not (tmp_path / "cache" / "models").exists()
