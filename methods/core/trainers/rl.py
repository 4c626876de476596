"""`trainer=grpo` / `trainer=rloo`: TRL's critic-free online RL trainers behind the suite's scorer interface.

Both sample `num_generations` completions per prompt from the policy, score each with a reward, and
use the group as the baseline (GRPO: (r − mean) / std within the group; RLOO: r minus the mean of the
other completions), so no value model is trained. The reward is any suite scorer
(`scorer.score(items, outputs) -> list[float]`: `methods.judges.gold.GoldJudge`,
`methods.judges.reward_model.RewardModelJudge`, ...), adapted to TRL's reward-function call by
`ScorerReward`.

Rows are {id, prompt (text or chat), item (the dict the scorer needs)}. The TRL dataset holds the
conversational prompt and the row's id (`item_id` column; Arrow cannot hold arbitrary dicts), and the
adapter holds id -> item. The scorer is given at train time, not in the config:

    spec.train(run, rows, "rl", scorer=GoldJudge())        # or scorer=[judge_a, judge_b] with args.reward_weights

`train` builds the adapter from the rows and hands it to the stage inside `trainer_cls`
(`functools.partial(GRPOTrainer-or-subclass, reward_funcs=...)`), so `stage.py` is the shared one and the
spec itself stays a plain config. A subclass of `trl.GRPOTrainer` / `trl.RLOOTrainer` comes in through
`trainer_cls` as for the other trainers.

TRL 1.16 facts relied on (trl/trainer/):
- grpo_trainer.py:1584-1585 (rloo_trainer.py:1153-1154): every dataset column but prompt/completion is
  passed to a reward function as a keyword list, one entry per completion; grpo_trainer.py:1588-1594 add
  `trainer_state`, `log_extra`, `log_metric`; grpo_trainer.py:1626-1627 call
  `reward_func(prompts=..., completions=..., completion_ids=..., **reward_kwargs)`; None -> NaN (1630);
  a wrong-length answer raises (1631).
- grpo_trainer.py:2229-2247 (rloo_trainer.py:1415-1419): conversational prompts give completions
  `[{"role": "assistant", "content": text}]`, plain-text prompts give strings.
- grpo_config.py:473 / rloo_config.py:294: `remove_unused_columns` defaults to False, which keeps `item_id`.
- grpo_trainer.py:983-1003 / rloo_trainer.py:669-689: beta != 0 with a full fine-tune loads the reference
  from `config._name_or_path` (the init directory); with LoRA the reference is the adapter disabled.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any

from methods.core.trainers.base import TrainerSpec

ID_COLUMN = "item_id"  # the dataset column naming each prompt's item


# ---- the reward adapter ---------------------------------------------------------------------------


def completion_text(completion) -> str:
    """The assistant's text of one TRL completion: a string (plain-text prompts) as it is; a conversational
    completion (a list of messages) -> the last assistant message's content (text parts joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    texts = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
    if not texts:
        return ""
    content = texts[-1].get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")


class ScorerReward:
    """A TRL reward function (`reward_funcs` entry) over a suite scorer.

    TRL calls it with the batch's prompts and completions and every extra dataset column as keyword lists;
    it looks each completion's item up by its `item_id` and returns `scorer.score(items, texts)`.
    Its `__name__` (the scorer's `name`) is what TRL logs the reward under (`rewards/<name>/mean`)."""

    def __init__(self, scorer, items_by_id: dict, id_column: str = ID_COLUMN, name: str | None = None):
        if not callable(getattr(scorer, "score", None)):
            raise TypeError(f"reward scorer {scorer!r} has no score(items, outputs) method")
        self.scorer, self.items_by_id, self.id_column = scorer, dict(items_by_id), id_column
        self.__name__ = name or str(getattr(scorer, "name", None) or type(scorer).__name__)

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        if self.id_column not in kwargs:
            raise ValueError(f"reward {self.__name__}: TRL passed no {self.id_column!r} column (got "
                             f"{sorted(k for k in kwargs if k not in _TRL_EXTRAS)}); keep remove_unused_columns false")
        ids = kwargs[self.id_column]
        missing = sorted({str(i) for i in ids if i not in self.items_by_id})
        if missing:
            raise KeyError(f"reward {self.__name__}: no item for {self.id_column} {missing[:5]}")
        items = [self.items_by_id[i] for i in ids]
        outputs = [completion_text(c) for c in completions]
        scores = list(self.scorer.score(items, outputs))
        if len(scores) != len(outputs):
            raise ValueError(f"reward {self.__name__}: score() returned {len(scores)} scores for {len(outputs)} outputs")
        return [None if s is None else float(s) for s in scores]

    def __repr__(self) -> str:
        return f"ScorerReward({self.__name__}, {len(self.items_by_id)} items)"


# what TRL adds to the dataset columns in a reward call (not columns)
_TRL_EXTRAS = {"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}


def reward_funcs_from_scorer(scorer, items_by_id: dict, id_column: str = ID_COLUMN) -> list[ScorerReward]:
    """TRL `reward_funcs` from one scorer or a list of them (weighted by `args.reward_weights`), each looking
    items up in `items_by_id` (id -> item) by the dataset's `id_column`. Same-named scorers get a suffix so
    that TRL logs each one apart."""
    scorers = list(scorer) if isinstance(scorer, (list, tuple)) else [scorer]
    if not scorers:
        raise ValueError("no reward scorer given")
    names = [str(getattr(s, "name", None) or type(s).__name__) for s in scorers]
    names = [n if names.count(n) == 1 else f"{n}_{k}" for k, n in enumerate(names)]
    return [ScorerReward(s, items_by_id, id_column, n) for s, n in zip(scorers, names)]


# ---- rows -> TRL's prompt dataset -----------------------------------------------------------------


def row_ids(rows: list[dict]) -> list[str]:
    """Each row's id as a string (the row's index where it has none)."""
    return [str(r.get("id", k)) for k, r in enumerate(rows)]


def items_by_id(rows: list[dict]) -> dict[str, dict]:
    """id -> item; refuses a row without an item dict, or one id with two different items."""
    out: dict[str, dict] = {}
    for i, r in zip(row_ids(rows), rows):
        item = r.get("item")
        if not isinstance(item, dict):
            raise ValueError(f"RL row {i!r}: needs an `item` dict (what the reward scorer reads), got {type(item).__name__}")  # noqa: TRY004
        if i in out and out[i] != item:
            raise ValueError(f"RL rows: id {i!r} names two different items")
        out[i] = item
    return out


def prompt_rows(rows: list[dict]) -> list[dict]:
    """TRL's conversational prompt-only rows {prompt: [user turn(s)], item_id} from {id, prompt, item} rows."""
    out = []
    for i, r in zip(row_ids(rows), rows):
        p = r.get("prompt")
        if isinstance(p, str):
            p = [{"role": "user", "content": p}]
        if not p or not isinstance(p, list):
            raise ValueError(f"RL row {i!r}: `prompt` must be a text or a non-empty chat (list of messages)")
        out.append({"prompt": list(p), ID_COLUMN: i})
    return out


# ---- the specs ------------------------------------------------------------------------------------


@dataclass
class _CriticFreeSpec(TrainerSpec):
    """Shared by GRPO and RLOO: `args` are the TRL config's fields; rows {id, prompt, item}; the reward
    scorer is given to `train(..., scorer=...)`."""

    output_name = "policy"

    def training_args(self, output_dir, **overrides):
        from omegaconf import DictConfig, OmegaConf

        given = OmegaConf.to_container(self.args, resolve=True) if isinstance(self.args, DictConfig) else dict(self.args)
        given.update(overrides)
        refuse_strings_for_numbers(self.config_class(), given)  # before TRL's __post_init__ does arithmetic on them
        n = given.get("num_generations")
        if isinstance(n, int) and n < 2:  # TRL refuses it too (grpo_config.py:1137), without naming the field
            raise ValueError(f"args.num_generations={n}: the group baseline needs at least 2 completions a prompt")
        config = super().training_args(output_dir, **overrides)
        check_runnable(config)
        return config

    def dataset(self, tok, rows, args, stage):
        from datasets import Dataset

        items_by_id(rows)  # every row has its item, before any model work
        conv = prompt_rows(rows)
        per_step = args.generation_batch_size // args.num_generations
        return Dataset.from_list(conv), {"n_prompts": len(conv), "num_generations": args.num_generations,
                                         "prompts_per_generation_batch": per_step}

    def trainer(self, model, tok, dataset, args, trainer_cls=None, reward_funcs=None):
        cls = trainer_cls or self.trainer_class()
        if reward_funcs is not None:
            cls = functools.partial(cls, reward_funcs=reward_funcs)
        elif not (isinstance(cls, functools.partial) and "reward_funcs" in cls.keywords):
            raise ValueError(f"trainer {self.name}: no reward; train with spec.train(run, rows, stage, scorer=...) "
                             "or pass reward_funcs")
        return cls(model=model, args=args, train_dataset=dataset, processing_class=tok, peft_config=self.lora_config())

    def train(self, run, rows: list[dict], stage: str, init_path: str | None = None, trainer_cls=None, *,
              scorer=None, **arg_overrides) -> str:
        """Train on `rows` with `scorer` (one suite scorer, or a list weighted by args.reward_weights) as the
        reward; returns the trained policy's directory."""
        if scorer is None:
            raise ValueError(f"trainer {self.name}: train(..., scorer=...) needs the reward scorer "
                             "(e.g. methods.judges.gold.GoldJudge())")
        rewards = reward_funcs_from_scorer(scorer, items_by_id(rows))
        weights = self.arg("reward_weights")
        if weights is not None and len(weights) != len(rewards):
            raise ValueError(f"trainer {self.name}: args.reward_weights has {len(weights)} weights for "
                             f"{len(rewards)} scorers")
        cls = functools.partial(trainer_cls or self.trainer_class(), reward_funcs=rewards)
        return super().train(run, rows, stage, init_path, cls, **arg_overrides)


@dataclass
class GRPOTrainerSpec(_CriticFreeSpec):
    """`trainer=grpo`: `args` are `trl.GRPOConfig` fields; the trainer is `trl.GRPOTrainer` (or `trainer_cls`)."""

    name: str = "grpo"

    def config_class(self):
        from trl import GRPOConfig

        return GRPOConfig

    def trainer_class(self):
        from trl import GRPOTrainer

        return GRPOTrainer


@dataclass
class RLOOTrainerSpec(_CriticFreeSpec):
    """`trainer=rloo`: `args` are `trl.RLOOConfig` fields; the trainer is `trl.RLOOTrainer` (or `trainer_cls`)."""

    name: str = "rloo"

    def config_class(self):
        from trl import RLOOConfig

        return RLOOConfig

    def trainer_class(self):
        from trl import RLOOTrainer

        return RLOOTrainer


# ---- validation -----------------------------------------------------------------------------------


def _numeric(tp) -> bool:
    """Whether a dataclass field type takes a number and no string (int, float, int | None, ...)."""
    if isinstance(tp, str):
        parts = {p.strip() for p in tp.split("|")}
        return bool(parts & {"int", "float"}) and not parts & {"str", "Any"}
    if tp in (int, float):
        return True
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = typing.get_args(tp)
        return any(a in (int, float) for a in args) and str not in args and Any not in args
    return False


def refuse_strings_for_numbers(config_class, args: dict) -> None:
    """A string given for a numeric field (int, float, or such | None) fails here, naming it, before TRL's
    config does arithmetic with it (e.g. generation_batch_size % num_generations)."""
    fields = {f.name: f.type for f in dataclasses.fields(config_class)}
    for name, value in args.items():
        if isinstance(value, str) and name in fields and _numeric(fields[name]):
            raise ValueError(f"args.{name}={value!r}: must be a number")


def check_runnable(config) -> None:
    """Refuse settings that cannot run in this environment or would break the reward, naming the field."""
    if getattr(config, "use_vllm", False):
        from trl.import_utils import is_vllm_available

        if not is_vllm_available():
            raise ValueError("args.use_vllm=True: vllm is not installed here (generation would fail at the first "
                             "step); set use_vllm false (generate with transformers) or install vllm on a GPU host")
    if getattr(config, "remove_unused_columns", False):
        raise ValueError(f"args.remove_unused_columns=True would drop the {ID_COLUMN!r} column the reward reads "
                         "each completion's item from; leave it false (TRL's default for GRPO/RLOO)")


# what each trainer logs as the mean reward and the KL (PPO: ours; GRPO/RLOO: TRL's)
SCORE_KEYS, KL_KEYS = ("score", "reward"), ("kl",)


def log_summary(policy_dir) -> dict:
    """From an RL stage's train_metrics.json (beside the trained `policy_dir`): the first and the last
    update's mean reward (`first_score`, `last_score`), KL to the initial policy (`first_kl`, `last_kl`;
    PPO: nats per response, GRPO/RLOO: TRL's per-token mean, absent when beta is 0) and `n_updates`."""
    from pathlib import Path

    from methods.core.io import read_json

    log = read_json(Path(policy_dir).parent / "train_metrics.json")["log"]
    out = {}
    for name, keys in (("score", SCORE_KEYS), ("kl", KL_KEYS)):
        series = next((s for s in ([e[k] for e in log if k in e] for k in keys) if s), [])
        if series:
            out[f"first_{name}"], out[f"last_{name}"] = series[0], series[-1]
    out["n_updates"] = max((e.get("step", 0) for e in log), default=0)
    return out
