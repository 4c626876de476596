"""Checks every data set with iteration pools shares: integer settings and `data.n_unlabelled`."""
from __future__ import annotations


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def pool_sizes(n_unlabelled) -> tuple:
    """`data.n_unlabelled` as a tuple: Hydra hands over a ListConfig; a bare int means one pool."""
    return (n_unlabelled,) if is_int(n_unlabelled) else tuple(n_unlabelled)


def check_pool_sizes(pools: tuple) -> None:
    if not all(is_int(n) and n >= 0 for n in pools):
        raise ValueError(f"data.n_unlabelled={list(pools)}: pool sizes must be integers >= 0")


def check_pool_index(i, pools: tuple) -> None:
    if not is_int(i) or not 1 <= i <= len(pools):
        raise ValueError(f"unlabelled pool {i!r}: data.n_unlabelled gives pools 1..{len(pools)}")
