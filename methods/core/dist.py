"""Several processes under `accelerate launch` / `torchrun`: who works, who waits.

Training stages run on every rank (data parallel, the trainer syncs gradients). Every other stage —
sampling, labelling, evaluation, writing a file — runs on the main process only; the other ranks wait
for its `_done.json` (a file, not a collective: a long sampling stage must not hit a collective's
timeout) and then read what it wrote. The rank comes from the launcher's environment, so nothing
here initialises torch.distributed.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


# torchrun / accelerate's multi-process launcher, then mpirun (MPICH, Open MPI)
RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")
SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def _env_int(names, default: int) -> int:
    for n in names:
        if os.environ.get(n):
            return int(os.environ[n])
    return default


def rank() -> int:
    return _env_int(RANK_VARS, 0)


def world_size() -> int:
    return _env_int(SIZE_VARS, 1)


def check_launch() -> None:
    """`accelerate launch --cpu --num_processes N` (accelerate 1.15) starts ONE process unless mpirun is
    given (`--mpirun_hostfile`): it sets MASTER_ADDR but no rank, and the run would silently train alone."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and os.environ.get("MASTER_ADDR") \
            and not any(os.environ.get(n) for n in RANK_VARS):
        raise SystemExit(
            "accelerate launch --cpu --num_processes N started a single process (accelerate starts several CPU "
            "processes only through mpirun). On CPU use `accelerate launch --multi_gpu --num_processes N` "
            "(torchrun; gloo on CPU) or `torchrun --nproc_per_node N -m experiments.run ...`")


def is_main() -> bool:
    return rank() == 0


def wait_for(path: Path, what: str, ready=None, poll_s: float = 0.5, timeout_s: float | None = None) -> None:
    """Block a non-main rank until the main process has written `path` (a stage's `_done.json`) and
    `ready()` holds (e.g. the stage's files match it: not a stale one the main is about to redo).
    When the main process fails, the launcher (torchrun, accelerate) stops the other ranks."""
    t0 = time.monotonic()
    while not (Path(path).exists() and (ready is None or ready())):
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"rank {rank()}: {what} did not finish on the main process within {timeout_s:.0f} s")
        time.sleep(poll_s)
