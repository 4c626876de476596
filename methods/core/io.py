"""Small file helpers: atomic writes and row-validated readers.

Every artifact of a run is written through `atomic_write_*`, so a killed process leaves either the
previous file or the new one, never half of one.
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


class DataError(ValueError):
    """A data file has a row that cannot be used; the message names the file and the row."""


def _open_text(path: Path, mode: str = "rt"):
    return gzip.open(path, mode, encoding="utf-8") if str(path).endswith(".gz") else open(path, mode, encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be read by others
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, _dumps(obj, indent=2) + "\n")


def atomic_write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    return atomic_write_text(path, "".join(_dumps(r) + "\n" for r in rows))


def _dumps(obj: Any, indent: int | None = None) -> str:
    """JSON, with NaN and infinities written as null (bare NaN is not JSON)."""
    return json.dumps(_finite(obj), indent=indent, ensure_ascii=False, default=_jsonable, allow_nan=False)


def _finite(o: Any) -> Any:
    if isinstance(o, float):
        return o if o == o and o not in (float("inf"), float("-inf")) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and getattr(o, "ndim", None) == 0:  # numpy / torch scalars
        return _finite(o.item())
    return o


def _jsonable(o: Any):
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    try:
        with _open_text(Path(path)) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataError(f"{path}: not a readable JSON file ({e})") from None


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (row number starting at 1, row) from a .json list or a .jsonl file (optionally .gz)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        with open(path, "rb") if not str(path).endswith(".gz") else gzip.open(path, "rb") as f:
            for i, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}, row {i}: not UTF-8 text ({e.reason} at byte {e.start})") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}, row {i}: not valid JSON ({e.msg})") from None
                yield i, row
    else:
        data = read_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
        yield from enumerate(data, start=1)


def read_rows(
    path: str | Path,
    required: dict[str, type | tuple[type, ...]],
    convert: Callable[[dict], dict] | None = None,
) -> list[dict]:
    """Read rows and check that each has the `required` fields with the given types.

    A bad row raises `DataError("<file>, row <n>: ...")` before any row is used.
    """
    rows = []
    for i, row in iter_rows(path):
        if not isinstance(row, dict):
            raise DataError(f"{path}, row {i}: expected an object, got {type(row).__name__}")
        for key, typ in required.items():
            if key not in row:
                raise DataError(f"{path}, row {i}: missing field '{key}'")
            if not isinstance(row[key], typ):
                want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
                raise DataError(f"{path}, row {i}: field '{key}' should be {want}, got {type(row[key]).__name__}")
        if convert is not None:
            try:
                row = convert(row)
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}, row {i}: {e}") from None
        rows.append(row)
    return rows
