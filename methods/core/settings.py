"""Typed settings: a method's (or labeler's) dataclass is the schema of its config node.

`check_types(obj, where)` checks every field's value against its annotation (int, float, str, bool,
X | None, list, dict) right after Hydra instantiates the object, before anything heavy starts, so
`method.n_samples=abc` fails naming `method.n_samples`. `tests/test_configs.py` checks that every YAML
entry's keys and values equal its dataclass's fields and defaults (one source of defaults).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union


def _ok(value, tp) -> bool:
    if tp is Any or tp is typing.Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is not None:
        tp = origin
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (list, tuple):
        from omegaconf import ListConfig

        return isinstance(value, (list, tuple, ListConfig))
    if tp is dict:
        from omegaconf import DictConfig

        return isinstance(value, (dict, DictConfig))
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # a Callable, a Protocol, ...: not checked here


def check_types(obj, where: str) -> None:
    if not dataclasses.is_dataclass(obj):
        return
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init or f.name.startswith("_"):
            continue
        value = getattr(obj, f.name)
        if not _ok(value, hints.get(f.name, Any)):
            raise ValueError(f"{where}.{f.name}={value!r}: must be {_name(hints[f.name])}")


def _name(tp) -> str:
    args = typing.get_args(tp)
    if args and typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
    return getattr(tp, "__name__", str(tp))
