"""`TrainerSpec`: what a `conf/trainer/` entry instantiates to.

A spec holds TRL's own config fields (`args`, passed through as they are: see the TRL config class
for each field) and PEFT LoRA settings (`lora`, null = full fine-tune). It validates itself before
any model loads (`validate`: builds the TRL config and refuses strings where numbers belong), and
trains through the shared stage (`train`, see `stage.py`). A trainer kind subclasses it and fills four
small hooks: `config_class` (which TRL config), `load` (which model class), `dataset` (rows -> TRL's
dataset, with a report), `trainer_class` (which TRL trainer).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainerSpec:
    name: str = "trainer"
    args: dict = field(default_factory=dict)  # TRL config fields
    lora: Any = None  # peft.LoraConfig fields, or None for a full fine-tune
    output_name = "policy"  # the trained model's folder in the stage directory
    curve_keys = ("loss", "rewards/margins")  # what train_curve.png plots from the log history

    # ---- hooks ------------------------------------------------------------------------------------
    def config_class(self):
        raise NotImplementedError

    def load(self, run, path: str):
        """(model, tokenizer) to train, from `path`; on the CPU (the trainer places it)."""
        return run.model_source.load(path, for_generation=False)

    def dataset(self, tok, rows: list[dict], args, stage: str) -> tuple[Any, dict]:
        """TRL's training dataset from the rows, and counts for train_metrics.json."""
        raise NotImplementedError

    def trainer_class(self):
        """The TRL trainer class used when the caller gives no `trainer_cls` (a hook subclass)."""
        raise NotImplementedError

    def trainer(self, model, tok, dataset, args, trainer_cls=None):
        cls = trainer_cls or self.trainer_class()
        return cls(model=model, args=args, train_dataset=dataset, processing_class=tok,
                   peft_config=self.lora_config())

    # ---- shared -----------------------------------------------------------------------------------
    def training_args(self, output_dir: str | Path, **overrides):
        import torch
        from omegaconf import DictConfig, OmegaConf

        args = OmegaConf.to_container(self.args, resolve=True) if isinstance(self.args, DictConfig) else dict(self.args)
        args.update(overrides)
        args.setdefault("use_cpu", not torch.cuda.is_available())
        return self.config_class()(output_dir=str(output_dir), **args)

    def lora_config(self):
        if not self.lora:
            return None
        from omegaconf import DictConfig, OmegaConf
        from peft import LoraConfig

        lora = OmegaConf.to_container(self.lora, resolve=True) if isinstance(self.lora, DictConfig) else dict(self.lora)
        return LoraConfig(**{"task_type": "CAUSAL_LM", **lora})

    def arg(self, key: str, default=None):
        return self.args.get(key, default)

    def record(self) -> dict:
        """What the trained model depends on besides its rows and init (the stage's inputs record:
        a checkpoint made under another record is never resumed). A spec with settings of its own
        that change the training data adds them here."""
        from methods.core.trainers.stage import plain

        return {"trainer": self.name, "args": plain(self.args), "lora": plain(self.lora)}

    def validate(self, where: str = "trainer") -> None:
        """Build the TRL config (no model): unknown fields, bad values and strings for numbers fail here."""
        try:
            config = self.training_args(os.devnull)
            check_types(config)
            self.lora_config()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where} ({self.name}): {e}") from None

    def train(self, run, rows: list[dict], stage: str, init_path: str | None = None, trainer_cls=None,
              **arg_overrides) -> str:
        from methods.core.trainers.stage import train_stage

        return train_stage(run, self, rows, stage, init_path, trainer_cls, **arg_overrides)


def report_cut_rows(report: dict, stage: str, ids: list, given: int, noun: str, cuts) -> dict:
    """Log and count the rows TRL drops or truncates at max_length; `cuts` is [(what, indices, why)].
    Adds n_<noun>s_<what> and the first ids (<what>_<noun>_ids) to `report`."""
    import logging

    for what, found, why in cuts:
        if found:
            named = [ids[k] for k in found[:FIRST_IDS]]
            logging.getLogger("methods.core.trainers").warning(
                "stage %s: %d of %d %ss %s (%s): ids %s%s", stage, len(found), given, noun, what, why, named[:5],
                " ..." if len(found) > 5 else "")
            report[f"n_{noun}s_{what}"] = len(found)
            report[f"{what}_{noun}_ids"] = named
    return report


# Row ids named in the log and in train_metrics.json (the counts are always complete).
FIRST_IDS = 20


def check_types(args) -> None:
    """TRL takes a string where it wants a number and fails only inside the optimizer: refuse it here."""
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        want = f.type if isinstance(f.type, type) else {"float": float, "int": int}.get(str(f.type))
        if want in (float, int) and isinstance(value, str):
            raise ValueError(f"args.{f.name}={value!r}: must be a number")
    report = args.report_to or []
    for name in [report] if isinstance(report, str) else report:
        if name == "tensorboard":
            from transformers.integrations import is_tensorboard_available

            if not is_tensorboard_available():
                raise ValueError("args.report_to=[tensorboard]: tensorboard is not installed (pip install tensorboard)")
