"""Data files: a malformed row fails with a message naming the file and the row; writes are atomic."""
from __future__ import annotations

import json

import pytest

from methods.core.io import DataError, atomic_write_json, read_rows
from methods.core.pairs import PAIR_FIELDS, best_worst, read_pairs


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}


@pytest.mark.parametrize("bad,msg", [
    ({"id": "b", "prompt": "p", "chosen": "c"}, "row 2: missing field 'rejected'"),
    ({"id": "b", "prompt": "p", "chosen": 3, "rejected": "r"}, "row 2: field 'chosen' should be str, got int"),
    ("{not json", "row 2: not valid JSON"),
    ('["a list"]', "row 2: expected an object"),
])
def test_malformed_row_names_file_and_row(tmp_path, bad, msg):
    path = _write(tmp_path / "pairs.jsonl", [GOOD, bad, GOOD])
    with pytest.raises(DataError) as e:
        read_pairs(path)
    assert str(path) in str(e.value) and msg in str(e.value)


def test_good_rows_read_from_json_list(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([GOOD, GOOD]))
    assert read_rows(path, PAIR_FIELDS) == [GOOD, GOOD]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_pairs(tmp_path / "nope.jsonl")


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.parametrize("scores,want", [([0.5, 1.0, 0.0, 1.0], (1, 2)), ([0.3, 0.3], None), ([0.0, 0.5], (1, 0))])
def test_best_worst(scores, want):
    assert best_worst(scores) == want
