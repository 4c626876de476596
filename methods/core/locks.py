"""One process at a time per run directory (or cache entry): a lock file holding the owner's pid.

`hold(path)` creates `path/.lock` exclusively. If it exists and its pid is alive, it either raises
`Busy` naming that process (`wait=False`, run directories) or polls until the lock is gone
(`wait=True`, shared cache entries). A lock whose pid is dead (a killed run) is taken over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

LOCK = ".lock"


class Busy(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def hold(path: str | Path, wait: bool = False, poll: float = 2.0, name: str = LOCK):
    """Lock `path` (a directory) through the file `path/name`."""
    lock = Path(path) / name
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            same_host = owner and owner.get("host") == me["host"]
            if owner is None or (same_host and not _alive(int(owner["pid"]))):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            if not wait:
                raise Busy(f"{path} is in use by process {owner['pid']} on {owner['host']} (since {owner['since']}); "
                           "wait for it to finish, or stop it (a lock of a dead process is taken over)") from None
            time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        if (_owner(lock) or {}).get("pid") == me["pid"]:
            lock.unlink(missing_ok=True)
