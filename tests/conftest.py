"""Shared fixtures: a tiny model built in code, and paths to the real data beside the repo."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny(cache_dir):
    """(source, model, tokenizer) of the tiny random Llama."""
    from methods.core.models import TinyLlama

    src = TinyLlama(cache_dir=str(cache_dir / "models"))
    model, tok = src.load()
    return src, model, tok


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny-model tests stay fast and leave the other core free."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (a fresh clone has no ../shared/data)")
    return SHARED_DATA


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory) -> str:
    """python3 if a kernelspec exists, else one registered in a temp dir for this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" in KernelSpecManager().find_kernel_specs():
        return "python3"
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / "selfalign-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "selfalign test", "language": "python"}))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(spec_dir.parents[1]), os.environ.get("JUPYTER_PATH")]))
    return "selfalign-test"
