"""Every preset composes and validates; bad settings fail before any model is loaded."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def compose(overrides):
    from hydra import compose as _compose
    from hydra import initialize_config_module

    import experiments.run  # noqa: F401  (registers the config resolvers)

    with initialize_config_module("conf", version_base="1.3"):
        return _compose("config", overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from experiments.pipeline import build_run

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")  # presets with API judges validate the key's presence only
    cfg = compose([f"experiment={name}", f"run_dir={tmp_path}/run", f"paths.cache={tmp_path}/cache"])
    # a paper preset's hub model is given as a local directory, as on an offline machine (validation
    # refuses a hub id that is neither cached nor reachable)
    local = []
    if cfg.model._target_.endswith("HubModel"):
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text("{}")
        local = [f"model.local_path={tmp_path}/model"]
    OmegaConf.resolve(cfg)
    variants = cfg.get("variants") or {None: []}
    for vname, overrides in variants.items():
        sub = compose([f"experiment={name}", *overrides, *local, f"run_dir={tmp_path}/{vname}",
                       f"paths.cache={tmp_path}/cache"])
        run = build_run(sub)  # instantiates data, judge, method, model source; checks trainer args
        assert run.method.name == sub.method.name
    assert not (tmp_path / "cache" / "models").exists(), "validation must not load or convert a model"


def _app(*args, cwd: Path, timeout=120):
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "SELFALIGN_CACHE": str(cwd / "cache")})


def test_unknown_choice_lists_valid_ones(tmp_path):
    r = _app("method=nope", f"paths.runs={tmp_path}", cwd=tmp_path)
    assert r.returncode != 0
    assert "method" in r.stderr and "dpo" in r.stderr and "sft" in r.stderr


def test_bad_value_fails_before_heavy_work(tmp_path):
    r = _app("method=dpo", "data.seed_fraction=1.5", f"paths.runs={tmp_path}", cwd=tmp_path)
    assert r.returncode != 0
    assert "seed_fraction" in r.stderr
    assert not (tmp_path / "cache" / "models").exists()


def test_bad_trainer_arg_names_it(tmp_path):
    r = _app("method=dpo", "+trainers.policy.args.no_such_option=1", f"paths.runs={tmp_path}", cwd=tmp_path)
    assert r.returncode != 0
    assert "no_such_option" in r.stderr


def test_bad_label_set_names_choices(tmp_path):
    r = _app("method=dpo", "method.labels=most", f"paths.runs={tmp_path}", cwd=tmp_path)
    assert r.returncode != 0
    assert "method.labels='most'" in r.stderr and "seed" in r.stderr


def test_resume_key_ignores_paths_but_not_batch_size(tmp_path):
    """A moved cache or a hidden progress bar keeps the run's identity; a batch size (it changes samples) does not."""
    from experiments.pipeline import pinned_config

    base = pinned_config(compose(["experiment=smoke", f"paths.cache={tmp_path}/a"]))
    assert pinned_config(compose(["experiment=smoke", f"paths.cache={tmp_path}/b", "generation.progress=false"])) == base
    assert pinned_config(compose(["experiment=smoke", f"paths.cache={tmp_path}/a", "generation.batch_size=8"])) != base
    assert "<paths.cache>" in str(base["model"]["cache_dir"])


def test_trl_loss_options_the_hook_would_ignore_are_refused():
    from methods.core.trainers.dpo import DPOTrainerSpec

    with pytest.raises(ValueError, match="loss_type"):
        DPOTrainerSpec(args={"loss_type": ["ipo"]}).training_args("/tmp/unused")
    assert DPOTrainerSpec(args={"beta": 0.2}).training_args("/tmp/unused").beta == 0.2


def _yaml_entries(group: str):
    from omegaconf import OmegaConf

    for path in sorted((REPO / "conf" / group).glob("*.yaml")):
        node = OmegaConf.load(path)
        if "_target_" in node:
            yield path.stem, node


@pytest.mark.parametrize("group", ["method", "labeler"])
def test_yaml_defaults_equal_the_dataclass_defaults(group):
    """One source of defaults: every key of a method's (labeler's) YAML entry is a field of its dataclass,
    with the dataclass's default as its value; a node taken from another group (`${trainers.policy}`,
    a judge) is the defaults list's business and is skipped."""
    import dataclasses

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    checked = 0
    for name, node in _yaml_entries(group):
        cls = get_class(node._target_)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in node:
            if key in ("_target_", "defaults"):
                continue
            assert key in fields, f"conf/{group}/{name}.yaml: {key!r} is not a field of {cls.__name__}"
            if OmegaConf.is_interpolation(node, key):
                continue
            f = fields[key]
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            value = OmegaConf.to_container(node, resolve=False)[key]
            assert value == default, f"conf/{group}/{name}.yaml: {key}={value!r}, {cls.__name__} says {default!r}"
            checked += 1
    assert checked >= 5


def test_a_typed_setting_fails_naming_itself(tmp_path):
    from experiments.pipeline import ConfigError, build_run

    base = ["model=tiny_llama", f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/c"]
    for bad, msg in [("method.n_samples=abc", "method.n_samples='abc': must be int"),
                     ("method.alpha=high", "method.alpha='high': must be float"),
                     ("method.seed_epochs=[1]", "method.seed_epochs=.*must be float or null"),
                     ("labeler.batch_size=1.5", "labeler.batch_size=1.5: must be int")]:
        with pytest.raises(ConfigError, match=msg):
            build_run(compose([*base, "method=spa", bad]))


def test_the_eval_set_is_its_own_part_of_the_config(tmp_path):
    """`eval.data` composes any data set's eval split with any training data (here another ifeval_synth,
    with its own seed and size); without it the eval set is the training data's."""
    from experiments.pipeline import build_run
    from methods.core.evaluation import eval_items

    base = ["model=tiny_llama", "method=sft", f"run_dir={tmp_path}/r", f"paths.cache={tmp_path}/c", "data.n_eval=8"]
    own = build_run(compose(base))
    other = build_run(compose([*base, "data@eval.data=ifeval_synth", "eval.data.n_eval=5", "eval.data.seed=3"]))
    assert own.eval_data is own.data and len(eval_items(own)) == 8
    assert other.eval_data is not other.data and len(eval_items(other)) == 5
    assert [it["id"] for it in eval_items(other)] == [it["id"] for it in other.eval_data.eval()]
    assert [it["instruction"] for it in eval_items(other)] != [it["instruction"] for it in own.data.eval()[:5]]
    assert other.data.labelled() == own.data.labelled()  # the training data is untouched
