"""Where a real data set's rows come from (a local file or a hub data set), and SPA-style splits.

`Source(source, local_path=..., split=..., hub_config=..., hub_data_dir=..., hub_file=...)`:
- `local_path`, when set and present, is read; else `source` is read when it is an existing local
  file; else `source` is a hub dataset id loaded with `datasets.load_dataset` (imported lazily;
  tests never get there). Relative local paths are tried from the working directory, then from the
  repository root (so `../shared/data/...` works from anywhere).
- Local files: `.json` (a list of rows), `.jsonl`, either optionally `.gz`, or `.parquet`.
- `rows(convert)` returns `convert(row, n)` for every row n (numbered from 1); a row that `convert`
  rejects (KeyError, TypeError, ValueError) raises `DataError("<file>, row <n>: ...")`, or, with
  `skip_malformed=True`, is logged with the same message and left out.

`PairSplits`: the split of a preference data set used by SPA (arXiv 2406.04412): shuffle all pairs
with `np.random.default_rng(seed).permutation` (what `datasets.Dataset.shuffle(seed=...)` does, so
the order equals the released code's `shuffle(seed=42)` on the same rows), then take the seed
(`n_seed` pairs, or ceil(seed_fraction · N)), then the unlabelled pools of `n_unlabelled` prompts
in order; the rest is held out.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Callable, Iterator

from methods.core.io import DataError, iter_rows
from methods.data.pools import check_pool_index, check_pool_sizes, is_int, pool_sizes

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
FILE_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".parquet")


def has_seed_share(data_cfg) -> bool:
    """Whether a `data` config sets a human-labelled seed (data.seed_fraction or data.n_seed); read from the
    config, so that validation loads no data."""
    return data_cfg.get("seed_fraction") is not None or bool(data_cfg.get("n_seed"))


def local_file(path: str | None) -> Path | None:
    """The existing file `path` names (from the cwd, else from the repo root), or None."""
    if not path:
        return None
    p = Path(path).expanduser()
    for cand in (p, REPO / p):
        if cand.is_file():
            return cand
    return None


def looks_like_file(path: str) -> bool:
    return str(path).endswith(FILE_SUFFIXES) or str(path).startswith((".", "/", "~"))


class Source:
    """A hub dataset id or a local file; nothing is read until `rows()`."""

    def __init__(self, source: str, local_path: str | None = None, split: str | None = "train",
                 hub_config: str | None = None, hub_data_dir: str | None = None, hub_file: str | None = None,
                 setting: str = "data.source"):
        self.source, self.local_path, self.split = source, local_path, split
        self.hub_config, self.hub_data_dir, self.hub_file = hub_config, hub_data_dir, hub_file
        self.setting = setting  # the config key, for messages

    def resolve(self) -> Path | None:
        """The local file to read, or None for the hub."""
        local = local_file(self.local_path)
        if local is not None:
            return local
        if self.local_path:
            log.warning("%s local_path=%s not found: using %s", self.setting, self.local_path, self.source)
        local = local_file(self.source)
        if local is None and looks_like_file(self.source):
            raise FileNotFoundError(f"{self.setting}={self.source}: no such file")
        return local

    def validate(self) -> None:
        """Cheap: the file exists, or the hub is usable (the `datasets` package is installed).

        Offline settings (HF_DATASETS_OFFLINE=1) are not refused here: the test suite sets them and
        still validates the paper presets; `datasets` itself fails at load time then.
        """
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"{self.setting}={self.source!r}: give a hub dataset id or a local file")
        if self.resolve() is not None:
            return
        where = f"{self.setting}={self.source}"
        if self.local_path:
            where += f" ({self.setting.rsplit('.', 1)[0]}.local_path={self.local_path} does not exist)"
        if importlib.util.find_spec("datasets") is None:
            raise ValueError(f"{where}: loading from the hub needs the `datasets` package (or give a local file)")

    def describe(self) -> str:
        local = self.resolve()
        return str(local) if local is not None else f"hub:{self.source}" + (f"[{self.split}]" if self.split else "")

    def raw_rows(self) -> Iterator[tuple[int, dict]]:
        local = self.resolve()
        if local is None:
            yield from enumerate(self._hub(), start=1)
        elif local.name.endswith(".parquet"):
            import pandas as pd

            yield from enumerate(pd.read_parquet(local).to_dict(orient="records"), start=1)
        else:
            yield from iter_rows(local)

    def rows(self, convert: Callable[[dict, int], dict], skip_malformed: bool = False) -> list[dict]:
        """`convert(row, row_number)` of every row; a rejected row raises DataError, or with
        `skip_malformed` is logged (file, row, reason), left out and listed in `self.skipped`."""
        label = self.describe()
        out, self.skipped = [], []
        for i, row in self.raw_rows():
            try:
                if not isinstance(row, dict):
                    raise TypeError(f"expected an object, got {type(row).__name__}")
                out.append(convert(row, i))
            except (KeyError, TypeError, ValueError) as e:
                msg = f"{label}, row {i}: " + (f"missing field {e}" if isinstance(e, KeyError) else str(e))
                if not skip_malformed:
                    raise DataError(msg) from None
                log.warning("skipped %s", msg)
                self.skipped.append(msg)
        return out

    def _hub(self):
        try:
            import datasets
        except ImportError:
            raise ImportError(f"{self.setting}={self.source}: install `datasets` to load it from the hub") from None
        if self.hub_file:  # a plain file inside a dataset repo (script-based repos do not load in datasets >= 4)
            return datasets.load_dataset("json", data_files=f"hf://datasets/{self.source}/{self.hub_file}", split="train")
        return datasets.load_dataset(self.source, self.hub_config, data_dir=self.hub_data_dir, split=self.split)


def rows_for(items, by_id: dict, where: str) -> list[dict]:
    """The rows of `by_id` for `items`, in their order; ValueError for an item `where` does not hold."""
    missing = next((it["id"] for it in items if it["id"] not in by_id), None)
    if missing is not None:
        raise ValueError(f"item {missing!r} is not in {where}")
    return [by_id[it["id"]] for it in items]


def messages_content(value, field: str) -> tuple[list[dict], str]:
    """(prompt messages, final assistant text) of a chat given as [{role, content}, ...] or a plain string."""
    if isinstance(value, str):
        return [], value
    if hasattr(value, "tolist"):  # parquet gives numpy arrays
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise ValueError(f"field '{field}' should be a non-empty list of messages or a string")
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"field '{field}': every message needs string 'role' and 'content'")
    if value[-1]["role"] != "assistant":
        raise ValueError(f"field '{field}': the last message should be the assistant's, got '{value[-1]['role']}'")
    return [dict(role=m["role"], content=m["content"]) for m in value[:-1]], value[-1]["content"]


class PairSplits:
    """Seeded seed / unlabelled-pool / held-out split of a list of preference pairs (see module doc).

    Subclasses set `self.n_seed, self.seed_fraction, self.n_unlabelled, self.seed` and implement
    `_load() -> list[dict]` (items with `id`, `instruction`, `chosen`, `rejected`).
    """

    _pairs: list[dict] | None = None

    def _init_split(self, seed, n_seed, seed_fraction, n_unlabelled):
        self.seed = seed
        self.n_seed, self.seed_fraction = n_seed, seed_fraction
        self.n_unlabelled = pool_sizes(n_unlabelled if n_unlabelled is not None else ())

    def validate_split(self) -> None:
        if not is_int(self.seed):
            raise ValueError(f"data.seed={self.seed!r}: must be an integer")
        if (self.n_seed is None) == (self.seed_fraction is None):
            raise ValueError(f"data.n_seed={self.n_seed!r}, data.seed_fraction={self.seed_fraction!r}: set exactly one "
                             "(the other null)")
        if self.n_seed is not None and (not is_int(self.n_seed) or self.n_seed < 1):
            raise ValueError(f"data.n_seed={self.n_seed!r}: must be an integer >= 1")
        if self.seed_fraction is not None and (not isinstance(self.seed_fraction, (int, float))
                                               or not 0 < self.seed_fraction <= 1):
            raise ValueError(f"data.seed_fraction={self.seed_fraction!r}: must be in (0, 1]")
        check_pool_sizes(self.n_unlabelled)

    # ---- splits -------------------------------------------------------------------------------
    def _all(self) -> list[dict]:
        if self._pairs is None:
            import numpy as np

            pairs = self._load()
            ids = [p["id"] for p in pairs]
            if len(set(ids)) != len(ids):
                raise DataError(f"{self.describe_source()}: duplicate item ids")
            order = np.random.default_rng(self.seed).permutation(len(pairs))
            self._pairs = [pairs[k] for k in order]
            self._by_id = {p["id"]: p for p in self._pairs}
            self._bounds(len(pairs))  # fail now if the sizes do not fit
        return self._pairs

    def seed_size(self, n_total: int) -> int:
        return self.n_seed if self.n_seed is not None else math.ceil(self.seed_fraction * n_total)

    def _bounds(self, n_total: int) -> list[tuple[int, int]]:
        """[(start, end)] of the seed and of each unlabelled pool in the shuffled order."""
        sizes = [self.seed_size(n_total), *self.n_unlabelled]
        if sum(sizes) > n_total:
            raise ValueError(f"data.n_seed/seed_fraction + sum(data.n_unlabelled) = {sum(sizes)}: the data set "
                             f"({self.describe_source()}) has only {n_total} pairs")
        starts = [sum(sizes[:k]) for k in range(len(sizes))]
        return [(s, s + n) for s, n in zip(starts, sizes)]

    def labelled(self) -> list[dict]:
        """Every pair of the data set except the eval items (the "DPO on all labels" line), shuffled order."""
        held = self._eval_ids()
        return [dict(p) for p in self._all() if p["id"] not in held]

    def _eval_ids(self) -> set:
        """Ids of this data set's pairs that `eval()` uses (never trained on). Empty by default: a data
        set evaluated on another set (UltraFeedback -> AlpacaEval) trains on all of its pairs."""
        return set()

    def seed_items(self) -> list[dict]:
        s, e = self._bounds(len(self._all()))[0]
        return [dict(p) for p in self._all()[s:e]]

    @property
    def n_iterations(self) -> int:
        return len(self.n_unlabelled)

    def unlabelled(self, i: int) -> list[dict]:
        """Prompt pool of iteration i (1-based); labels dropped."""
        check_pool_index(i, self.n_unlabelled)
        s, e = self._bounds(len(self._all()))[i]
        return [{"id": p["id"], "instruction": p["instruction"]} for p in self._all()[s:e]]

    def held_out(self) -> list[dict]:
        """The pairs after the last pool (never used for training)."""
        end = self._bounds(len(self._all()))[-1][1]
        return [dict(p) for p in self._all()[end:]]

    def preference_pairs(self, items) -> list[dict]:
        """Rows {id, prompt, chosen, rejected[, chosen_score, rejected_score]} for items of this data set."""
        self._all()
        out = []
        for p in rows_for(items, self._by_id, self.describe_source()):
            row = {"id": p["id"], "prompt": p["instruction"], "chosen": p["chosen"], "rejected": p["rejected"]}
            row.update({k: p[k] for k in ("chosen_score", "rejected_score") if p.get(k) is not None})
            out.append(row)
        return out
