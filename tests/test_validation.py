"""Bad settings and bad files fail before any model loads, naming the setting, the file and the row."""
from __future__ import annotations

import pytest

from experiments.pipeline import build_run
from methods.core.io import DataError, read_rows
from tests.test_configs import compose


@pytest.mark.parametrize("override,match", [
    ("eval.n_instructions=-3", "eval.n_instructions=-3"),
    ("eval.n_instructions=0", "eval.n_instructions=0"),
    ("generation.batch_size=0", "generation.batch_size=0"),
    ("generation.backend=foo", r"generation.backend='foo'.*\['hf', 'vllm', 'fast'\]"),
    ("trainers.policy.args.learning_rate=abc", "learning_rate='abc': must be a number"),
    ("data.label_sampling.drop_unfinished=maybe", "drop_unfinished"),
])
def test_bad_settings_fail_at_validation(tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        build_run(compose(["model=tiny_llama", "method=dpo", f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/c",
                           override]))
    assert not (tmp_path / "c" / "models").exists() and not (tmp_path / "r").exists()


def test_report_to_a_logger_that_is_not_installed(tmp_path):
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():
        pytest.skip("tensorboard is installed here")
    with pytest.raises(ValueError, match="tensorboard is not installed"):
        build_run(compose(["model=tiny_llama", "method=dpo", f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/c",
                           "trainers.policy.args.report_to=[tensorboard]"]))


def test_a_non_utf8_row_is_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}\n{"id": "b\xff"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl, row 2: not UTF-8"):
        read_rows(path, {"id": str})


def test_generic_model_choice_is_recorded_under_its_own_name(tmp_path):
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    run = build_run(compose(["model=hf", f"model.name_or_path={tmp_path}/my-model", "method=sft",
                             f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/c"]))
    assert run.model_source.name == "my-model" and run.describe()["model"] == "my-model"
    with pytest.raises(Exception, match="name_or_path"):
        build_run(compose(["model=hf", "method=sft", f"run_dir={tmp_path}/r2", f"paths.cache={tmp_path}/c"]))


def test_a_hub_id_that_cannot_be_loaded_offline_fails_at_validation(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="not in the local hub cache.*model.local_path"):
        build_run(compose(["model=hf", "model.name_or_path=nobody/no-such-model", "method=sft",
                           f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/c"]))
    assert not (tmp_path / "r").exists()  # refused before the run started
