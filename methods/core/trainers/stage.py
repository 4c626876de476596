"""The one training stage every trainer runs through:

    load (init weights) -> resume (newest complete checkpoint) -> train -> merge LoRA -> atomic save -> release

`train_stage(run, spec, rows, stage)` writes `run.dir/<stage>/`: TRL checkpoints under `checkpoints/`
while training (removed once the model is saved), the trained model (LoRA adapters merged) in
`<spec.output_name>/` (renamed into place, so it is there whole or not at all), `train_metrics.json`
(TRL's metrics, the whole-run loss, the spec's own report, the log history) and `train_curve.png`.

Under several processes (`accelerate launch --num_processes N`) every rank trains (the trainer
syncs gradients) and the main process alone writes the stage's files; see `methods.core.dist`.
A SIGTERM (SLURM pre-emption) saves a checkpoint at the end of the current step and stops; re-running
the same command resumes from it.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from methods.core import budget
from methods.core.io import atomic_write_json

log = logging.getLogger("selfalign")


def train_stage(run, spec, rows: list[dict], stage: str, init_path: str | None = None, trainer_cls=None,
                **arg_overrides) -> str:
    """Train `spec` (a `conf/trainer/` entry) on `rows` from `init_path` (default: the base model);
    returns the trained model's directory."""
    from methods.core import dist

    if not rows:
        raise ValueError(f"stage {stage}: no training rows (all samples tied, or an empty split)")

    def work(d: Path) -> None:
        out = d / spec.output_name
        if out.exists():  # killed after the model's atomic rename, before the stage was marked done
            if dist.is_main():
                shutil.rmtree(d / "checkpoints", ignore_errors=True)
                shutil.rmtree(d / "dataset", ignore_errors=True)
            return
        ckpt_dir = d / "checkpoints"
        _check_inputs(d, ckpt_dir, {**spec.record(), "overrides": arg_overrides, "init": init_path, "rows": rows}, stage)
        run.release()  # the generation copy is not needed while training
        model, tok = spec.load(run, init_path or run.base_model_path)
        args = spec.training_args(ckpt_dir, **arg_overrides)
        dataset, report = spec.dataset(tok, rows, args, stage)
        if dist.world_size() > 1 and hasattr(dataset, "save_to_disk"):  # a datasets.Dataset (TRL trainers)
            dataset = _on_disk(dataset, d / "dataset")
        trainer = spec.trainer(model, tok, dataset, args, trainer_cls)
        if trainer.is_deepspeed_enabled and spec.lora:
            raise ValueError(f"stage {stage}: LoRA under DeepSpeed ZeRO-3 would save unmerged adapters that the next "
                             "stage cannot load as a policy; train in full under ZeRO-3, or LoRA without DeepSpeed")
        last = last_complete_checkpoint(ckpt_dir, remove=dist.is_main())  # every rank picks the same one
        if last:
            log.info("stage %s: resuming from %s", stage, last)
        with save_on_sigterm(trainer) as stopped:
            result = trainer.train(resume_from_checkpoint=last)
        # the whole run's steps (a resumed run's state counts the steps before the kill); PPO's are updates
        budget.count(optimizer_steps=trainer.state.global_step)
        if stopped():
            raise SystemExit(f"stage {stage}: stopped by SIGTERM after saving a checkpoint; re-run the same "
                             "command to resume")
        tmp = d / f"{spec.output_name}.partial"
        if trainer.is_deepspeed_enabled:
            # ZeRO-3 partitions the weights: every rank joins the gather, the main one writes (needs
            # zero3_save_16bit_model). Not run here: no GPU, no deepspeed.
            trainer.save_model(str(tmp))
        if not dist.is_main():
            return
        final = trainer.model
        if not trainer.is_deepspeed_enabled:
            if hasattr(final, "merge_and_unload"):
                final = final.merge_and_unload()
            final.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        history = trainer.state.log_history  # restored from the checkpoint on a resume: the whole run
        plot_training_curve(history, d / "train_curve.png", f"{run.dir.name}: stage {stage}", spec.curve_keys)
        # train_loss is TRL's: the mean over the steps run since the last resume only
        atomic_write_json(d / "train_metrics.json", {
            **result.metrics, "train_loss_whole_run": whole_run_loss(history), "trainer": spec.name,
            "n_rows": len(rows) - report.get("n_rows_dropped", 0), **report, "log": history})
        tmp.rename(out)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # optimizer states are large; the model is saved
        shutil.rmtree(d / "dataset", ignore_errors=True)
        del trainer, model, final
        _empty_cuda_cache()

    return str(run.stage(stage, work, all_ranks=True) / spec.output_name)


def plain(x):
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else x


def _check_inputs(d: Path, ckpt_dir: Path, inputs: dict, stage: str) -> None:
    """Checkpoints resume only the training they came from: `inputs.json` records what this stage trains
    (trainer, settings, init, rows); checkpoints left by other inputs (a killed run of another config
    whose folder was reused) are removed, not resumed."""
    from methods.core import dist
    from methods.core.run import config_hash

    key = config_hash(inputs)
    f = d / "inputs.json"
    if f.is_file() and f.read_text().strip() != key and ckpt_dir.exists():
        log.warning("stage %s: its checkpoints were made from other inputs (another config or other rows): "
                    "removed, training from the start", stage)
        if dist.is_main():
            shutil.rmtree(ckpt_dir, ignore_errors=True)
    elif not f.is_file() and ckpt_dir.exists() and any(ckpt_dir.iterdir()):
        log.warning("stage %s: checkpoints without a record of their inputs: removed, training from the start", stage)
        if dist.is_main():
            shutil.rmtree(ckpt_dir, ignore_errors=True)
    if dist.is_main():
        f.write_text(key + "\n")


def _on_disk(dataset, path: Path):
    """The training set in one folder every rank reads: TRL caches derived columns (precomputed reference
    log-probs) beside a dataset's files, and an in-memory dataset's cache folder differs per process."""
    from datasets import load_from_disk

    from methods.core import dist

    from methods.core.run import config_hash

    done, token = path / "_written", config_hash(dataset.to_dict())  # the same on every rank
    if dist.is_main() and not (done.is_file() and done.read_text() == token):  # the same rows from a killed attempt stay
        shutil.rmtree(path, ignore_errors=True)
        dataset.save_to_disk(str(path))
        done.write_text(token)
    dist.wait_for(done, f"{path} (written by the main process)", ready=lambda: done.read_text() == token)
    return load_from_disk(str(path))


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")


def last_complete_checkpoint(ckpt_dir: Path, remove: bool = True) -> str | None:
    """The newest checkpoint-N that a save finished (state, optimizer, scheduler and weights present,
    trainer_state.json readable); a half-written newer one (killed mid-save) is skipped and removed."""
    import json

    if not ckpt_dir.exists():
        return None
    found = sorted((p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for p in found:
        complete = all((p / f).is_file() for f in CHECKPOINT_FILES) and any((p / f).is_file() for f in WEIGHT_FILES)
        try:
            complete = complete and bool(json.loads((p / "trainer_state.json").read_text()))
        except (OSError, ValueError):
            complete = False
        if complete:
            return str(p)
        if remove:
            log.warning("checkpoint %s is incomplete (killed while saving?): removed, resuming from an earlier one", p)
            shutil.rmtree(p, ignore_errors=True)
    return None


def save_on_sigterm(trainer):
    """While training: SIGTERM (SLURM pre-emption) makes the trainer save a checkpoint at the end of
    the current step and stop; the context yields a function telling whether that happened."""
    import signal
    from contextlib import contextmanager

    from transformers import TrainerCallback

    got = {"term": False}

    class _Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if got["term"]:
                control.should_save = True
                control.should_training_stop = True
            return control

    @contextmanager
    def ctx():
        def handler(signum, frame):
            got["term"] = True
            log.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")

        cb = _Stop()
        trainer.add_callback(cb)
        old = signal.signal(signal.SIGTERM, handler)
        try:
            yield lambda: got["term"]
        finally:
            signal.signal(signal.SIGTERM, old)
            trainer.remove_callback(cb)

    return ctx()



def whole_run_loss(log_history: list[dict]) -> float | None:
    """The step-weighted mean of the logged training losses over the whole log history.

    Each logged `loss` is the mean over the steps since the previous log, so it weighs (its step − the
    previous log's step). After a resume the history restored from the checkpoint holds the earlier
    steps' logs too, whereas TRL's `train_loss` averages only the steps run since the resume. Steps after
    the last log are not covered (logging_steps dividing the number of steps covers all); None when no
    loss was logged (fewer steps than logging_steps).
    """
    total = weight = 0.0
    previous = 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            w = entry["step"] - previous
            total, weight, previous = total + entry["loss"] * w, weight + w, entry["step"]
    return total / weight if weight else None


def plot_training_curve(log_history: list[dict], path: Path, title: str,
                        keys: tuple = ("loss", "rewards/margins")) -> None:
    """Loss and (when logged) rewards/margins per step as a PNG, written atomically. Matplotlib's
    object API with the Agg canvas: no pyplot, so no global backend is switched in the caller."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = {key: [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
              for key in keys}
    shown = [k for k, v in series.items() if v] or [keys[0]]
    fig = Figure(figsize=(5 * len(shown), 3.5))
    FigureCanvasAgg(fig)
    for ax, key in zip(fig.subplots(1, len(shown), squeeze=False)[0], shown):
        if series[key]:
            steps, values = zip(*series[key])
            ax.plot(steps, values, marker="o", markersize=3)
        else:
            ax.text(0.5, 0.5, "no step logged\n(fewer steps than logging_steps)", ha="center", va="center",
                    transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel(key)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".partial")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)


