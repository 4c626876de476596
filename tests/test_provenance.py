"""run.json records the code a run was made with: the commit, whether tracked files were changed, and
every commit a resumed run directory has seen."""
from __future__ import annotations

import subprocess

from methods.core.provenance import at_start, code_history, code_version


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_commit_and_dirty_in_a_checkout(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "new.txt").write_text("untracked files do not make the code dirty")
    assert code_version(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path) == {"commit": head, "dirty": True}


def test_outside_a_checkout_the_commit_is_null(tmp_path):
    assert code_version(tmp_path) == {"commit": None, "dirty": None}


def test_history_appends_only_a_change():
    a, b = {"commit": "a", "dirty": False}, {"commit": "b", "dirty": False}
    assert code_history(None, a) == [a]
    assert code_history([a], dict(a)) == [a]  # resumed at the same code: nothing added
    assert code_history([a], b) == [a, b]
    assert code_history([a, b], a) == [a, b, a]  # back to an earlier commit is a change too


def test_a_command_records_the_code_it_started_with():
    assert at_start() == code_version() and at_start() is at_start()  # read once, kept for the process
