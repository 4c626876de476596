"""SPA's self-refined DPO loss: a `PreferenceDPOTrainer` whose `pair_loss` smooths the labels of pairs
that its own (de-coupled) margin marks as likely noisy.

Per pair, with z the ordinary DPO log-ratio difference (policy vs. the DPO reference π_{i-1}):
  1. detection margin m = β·[(log π̃(y_w|x) − log π_ref(y_w|x)) − (log π̃(y_l|x) − log π_ref(y_l|x))],
     π̃ = softmax of the mixed logits h̃ = (1+λ)·h_θ − λ·h_ref (de-coupled noise detection, DND);
     λ = 0 gives π̃ = π_θ, i.e. m = β·z, and costs no extra forward;
  2. threshold from a rolling window of `window` (50) entries, by `threshold_convention`:
     - "current" (default): the batch's per-pair margins join the window of the last 50 margins
       first; threshold = the window's `percentile`-th (10th) percentile, **linear interpolation
       between the two nearest ranks** (`torch.quantile(..., interpolation="linear")`, numpy's default);
     - "released" (the authors' code, kingdy2002/SPA `trl/trl/trainer/dpo_trainer.py`): the window
       holds one entry per earlier training step, that step's batch-mean margin, and the batch joins
       it only after its threshold is taken; threshold = 0 until the window holds `window` entries,
       then the mean of the ascending sorted window's entries k and k+1, k = int(window·percentile/100);
  3. p̂ = 1[m > threshold] (p̂ = 0: the pair is flagged noisy), strict under both conventions;
  4. loss = −(1−α+α·p̂)·log σ(βz) − (α−α·p̂)·log σ(−βz), i.e. DPO for p̂ = 1 and DPO with label
     smoothing α for p̂ = 0; α = 0 while `progress` < `warmup_fraction` (first 20% of the steps).
m is computed under `torch.no_grad()`: it only chooses the label, the gradient flows through z.

Why a reference forward inside the hook: TRL's fused LM head returns per-token log-probs, not logits,
and with `precompute_ref_log_probs` the reference weights are not kept at all. DND needs full
logits of both models at the completion positions, so with λ > 0 the hook runs one extra no-grad
forward of the policy and one of the reference (backbone, then the LM head on completion
positions only, in chunks). The reference is TRL's `ref_model` when it has one, the base model with
LoRA adapters disabled under PEFT, and otherwise a frozen copy of the initial model (π_{i-1}) taken
before TRL wraps it.

The window and the counters live in a `MarginWindow` callback whose state is saved in every
checkpoint (`TrainerState.stateful_callbacks`) and restored on resume; at the end of training the
counters go to `settings.stats_path` (noisy share, mean margin).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from methods.core.trainers.dpo import PairBatch, PreferenceDPOTrainer
from methods.core.io import atomic_write_json

_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}


@dataclass
class RefineSettings:
    lam: float = 0.0  # DND mixing λ; 0 = off
    alpha: float = 0.1  # label smoothing of flagged pairs; 0 = no self-refinement
    window: int = 50
    percentile: float = 10.0
    warmup_fraction: float = 0.2  # α = 0 before this fraction of the optimisation steps
    threshold_convention: str = "current"  # current | released (see THRESHOLD_CONVENTIONS)
    stats_path: str | None = None  # where the end-of-training counters go (JSON)
    chunk_tokens: int = 1024  # completion positions per LM-head chunk in the DND forward


# ---- pure pieces (unit-tested) ------------------------------------------------------------------
def smoothed_dpo_loss(z, p_hat, alpha: float, beta: float):
    """−(1−α+α·p̂)·log σ(βz) − (α−α·p̂)·log σ(−βz), elementwise."""
    w_pos = 1 - alpha + alpha * p_hat
    w_neg = alpha - alpha * p_hat
    return -w_pos * F.logsigmoid(beta * z) - w_neg * F.logsigmoid(-beta * z)


def mixed_token_logps(policy_logits, ref_logits, targets, lam: float):
    """log softmax((1+λ)·h_θ − λ·h_ref) at `targets`; logits [N, V], targets [N] -> [N]."""
    mixed = (1 + lam) * policy_logits.float() - lam * ref_logits.float()
    return mixed.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


# ---- threshold conventions: what enters the window, when, and which quantile ----------------------
def quantile_threshold(window: list[float], size: int, fraction: float) -> float:
    """"current": linear-interpolation quantile of the window (torch.quantile's default; numpy's "linear").
    An empty window (evaluation before any training step) gives −inf: nothing is flagged."""
    if not window:
        return float("-inf")
    return torch.quantile(torch.tensor(window, dtype=torch.float64), fraction).item()


def released_rank(size: int, fraction: float) -> int:
    """k of the "released" rule: int(size·fraction) (the released code: int(50 · threshold))."""
    return int(size * fraction)


def released_threshold(window: list[float], size: int, fraction: float) -> float:
    """"released": 0 until the window holds `size` entries; then the mean of the ascending sorted
    window's entries k and k+1, k = `released_rank(size, fraction)` (0-based)."""
    if len(window) < size:
        return 0.0
    ordered = sorted(window)
    k = released_rank(size, fraction)
    return (ordered[k] + ordered[k + 1]) / 2


@dataclass(frozen=True)
class ThresholdConvention:
    """How the detection threshold is kept: what one training step adds to the window (`entries`),
    whether that happens before the step's threshold is taken (`batch_first`), and the rule
    `threshold(window, size, fraction)`. p̂ = 1[m > threshold] under every convention."""

    name: str
    batch_first: bool
    entries: Callable[[torch.Tensor], list[float]]
    threshold: Callable[[list[float], int, float], float]


THRESHOLD_CONVENTIONS: dict[str, ThresholdConvention] = {
    # this suite's convention: per-pair margins, the batch included, torch.quantile
    "current": ThresholdConvention("current", True, lambda m: [float(x) for x in m.tolist()],
                                   quantile_threshold),
    # the released code's: one batch-mean margin per earlier step, 0 until full, sorted entries k, k+1
    "released": ThresholdConvention("released", False, lambda m: [float(m.float().mean())],
                                    released_threshold),
}


def check_threshold_settings(convention: str, window: int, percentile: float) -> ThresholdConvention:
    """The convention named `convention`; ValueError (naming the `method.*` setting) when it is unknown
    or when "released" would index past the sorted window (needs int(window·percentile/100) + 1 < window)."""
    if convention not in THRESHOLD_CONVENTIONS:
        raise ValueError(f"method.threshold_convention={convention!r}: "
                         f"choose one of {list(THRESHOLD_CONVENTIONS)}")
    if convention == "released":
        k = released_rank(window, percentile / 100)
        if k + 1 >= window:
            raise ValueError(f"method.threshold_convention=released with method.window={window}, "
                             f"method.percentile={percentile}: the threshold averages the sorted window's "
                             f"entries k and k+1, k = int(window·percentile/100) = {k}; need k + 1 < window")
    return THRESHOLD_CONVENTIONS[convention]


class MarginWindow(TrainerCallback, ExportableState):
    """Rolling window of the last `size` entries, its threshold (by `convention`), and run counters."""

    def __init__(self, size: int = 50, percentile: float = 10.0, stats_path: str | None = None,
                 convention: str = "current"):
        if size < 1 or not 0 <= percentile <= 100:
            raise ValueError(f"window={size}, percentile={percentile}: need window ≥ 1 and 0 ≤ percentile ≤ 100")
        self.convention = check_threshold_settings(convention, size, percentile)
        self.size, self.percentile, self.stats_path = size, percentile, stats_path
        self.margins: list[float] = []  # the window's entries (per pair or per step, by convention)
        self.last_threshold: float | None = None  # the threshold the last training step used
        self.n_seen = 0  # pairs seen in training steps (a pair counts once per epoch)
        self.n_flagged = 0  # of those, p̂ = 0 (whether or not α was active)
        self.n_smoothed = 0  # of those, p̂ = 0 while α > 0: the pairs actually treated as noisy
        self.margin_sum = 0.0

    def push(self, margins) -> None:
        self.margins = (self.margins + [float(m) for m in margins])[-self.size :]

    def threshold(self) -> float:
        """The convention's threshold of the window as it stands now."""
        return self.convention.threshold(self.margins, self.size, self.percentile / 100)

    def p_hat(self, margins):
        """1 where the margin is above the threshold, 0 where it is flagged noisy."""
        return (margins > self.threshold()).to(margins.dtype)

    def observe(self, margins, training: bool = True):
        """p̂ of one batch's margins. In training, the batch also enters the window: before its threshold
        is taken ("current") or after ("released"). Outside training the window is only read."""
        conv = self.convention
        if training and conv.batch_first:
            self.push(conv.entries(margins))
        threshold = self.threshold()
        p_hat = (margins > threshold).to(margins.dtype)
        if training:
            self.last_threshold = threshold
            if not conv.batch_first:
                self.push(conv.entries(margins))
        return p_hat

    def record(self, margins, p_hat, alpha: float) -> None:
        flagged = int((p_hat == 0).sum().item())
        self.n_seen += len(margins)
        self.n_flagged += flagged
        self.n_smoothed += flagged if alpha > 0 else 0
        self.margin_sum += float(margins.sum().item())

    def stats(self) -> dict:
        n = max(self.n_seen, 1)
        return {
            "n_seen": self.n_seen,
            "noisy_share": self.n_smoothed / n,
            "flagged_share": self.n_flagged / n,
            "mean_margin": self.margin_sum / n if self.n_seen else None,
            "last_threshold": self.last_threshold,
            "threshold_convention": self.convention.name,
        }

    # ---- TrainerCallback / ExportableState: survive a resume from a checkpoint -------------------
    _ATTRS = ("margins", "n_seen", "n_flagged", "n_smoothed", "margin_sum", "last_threshold")

    def state(self) -> dict:
        return {
            "args": {"size": self.size, "percentile": self.percentile, "stats_path": self.stats_path,
                     "convention": self.convention.name},
            "attributes": {k: getattr(self, k) for k in self._ATTRS},
        }

    def on_train_begin(self, args, state, control, **kwargs):
        # the resumed TrainerState is loaded before on_train_begin; a fresh one holds our own state
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, dict) and state.global_step > 0:
            for k, v in saved.get("attributes", {}).items():
                setattr(self, k, v)

    def on_train_end(self, args, state, control, **kwargs):
        # one writer; under several processes the window and counters are rank 0's (per process, as in
        # the released code)
        if self.stats_path and state.is_world_process_zero:
            atomic_write_json(self.stats_path, self.stats())


# ---- the trainer --------------------------------------------------------------------------------
class SelfRefinedDPOTrainer(PreferenceDPOTrainer):
    """DPO with SPA's self-refined loss; settings come from `configured(settings)`."""

    settings = RefineSettings()

    @classmethod
    def configured(cls, settings: RefineSettings) -> type["SelfRefinedDPOTrainer"]:
        """A subclass bound to `settings` (the training stage instantiates the class it is given)."""
        return type(cls.__name__, (cls,), {"settings": settings})

    def __init__(self, model=None, *args, **kwargs):
        s = self.settings
        targs = kwargs.get("args")
        self._dnd_ref = None
        if s.lam > 0 and kwargs.get("peft_config") is None and getattr(targs, "precompute_ref_log_probs", False):
            # TRL keeps no reference weights here; copy π_{i-1} before TRL patches the forward
            if isinstance(model, str):
                raise TypeError("SelfRefinedDPOTrainer with λ > 0 needs the model object, not a path")
            self._dnd_ref = copy.deepcopy(model).eval().requires_grad_(False)
        super().__init__(model, *args, **kwargs)
        if self._dnd_ref is not None:
            self._dnd_ref.to(self.accelerator.device)
        self.window = MarginWindow(s.window, s.percentile, s.stats_path, s.threshold_convention)
        self.add_callback(self.window)

    @property
    def _window(self) -> MarginWindow:
        # a resume may swap the callback for a restored instance; use whichever is registered
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, MarginWindow):
                return cb
        return self.window

    def pair_loss(self, batch: PairBatch):
        s = self.settings
        z = batch.chosen_logratios - batch.rejected_logratios
        with torch.no_grad():
            if s.lam > 0:
                mix_c, mix_r = self._mixed_logps(batch.inputs, s.lam)
                m = self.beta * ((mix_c - batch.ref_chosen_logps) - (mix_r - batch.ref_rejected_logps))
            else:
                m = self.beta * z.detach()
            m = m.float()
            window = self._window
            training = self.model.training
            p_hat = window.observe(m, training)  # in training the batch also enters the window
            alpha = s.alpha if self.progress >= s.warmup_fraction else 0.0
            if training:
                window.record(m, p_hat, alpha)
                metrics = self._metrics["train"]
                metrics["spa/noisy_share"].append(float((p_hat == 0).float().mean()) if alpha > 0 else 0.0)
                metrics["spa/flagged_share"].append(float((p_hat == 0).float().mean()))
                metrics["spa/margin"].append(float(m.mean()))
                metrics["spa/alpha"].append(alpha)
        return smoothed_dpo_loss(z, p_hat.to(z.dtype), alpha, self.beta)

    # ---- DND: log-probs of the mixed logits -----------------------------------------------------
    def _reference_context(self):
        """(model whose forward is π_ref, context manager to enter around it)."""
        import contextlib

        if self.ref_model is not None:
            return self.ref_model, contextlib.nullcontext()
        if self._dnd_ref is not None:
            return self._dnd_ref, contextlib.nullcontext()
        unwrapped = self.accelerator.unwrap_model(self.model)
        if hasattr(unwrapped, "disable_adapter"):
            return unwrapped, unwrapped.disable_adapter()
        raise RuntimeError("DND needs reference logits: no ref_model, no LoRA adapters, and no reference copy")

    def _mixed_logps(self, inputs: dict, lam: float):
        """Σ over completion tokens of log softmax((1+λ)h_θ − λh_ref), split into (chosen, rejected)."""
        kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        kwargs["use_cache"] = False
        mask = inputs["completion_mask"][:, 1:].bool()  # position t predicts token t+1
        targets = inputs["input_ids"][:, 1:][mask]
        rows = mask.nonzero()[:, 0]
        policy = self.accelerator.unwrap_model(self.model)
        h_pol = _hidden(policy, kwargs)[:, :-1][mask]
        ref_model, ctx = self._reference_context()
        with ctx:
            h_ref = _hidden(ref_model, kwargs)[:, :-1][mask]
        # LM heads carry no LoRA adapter (TRL refuses lm_head targets), so they run outside the context
        head_pol, head_ref = _head(policy), _head(ref_model)
        pieces = []
        for k in range(0, len(targets), self.settings.chunk_tokens):  # bounds the [tokens, vocab] logits
            sl = slice(k, k + self.settings.chunk_tokens)
            pieces.append(mixed_token_logps(head_pol(h_pol[sl]), head_ref(h_ref[sl]), targets[sl], lam))
        tok_lp = torch.cat(pieces) if pieces else h_pol.new_zeros(0)
        sums = torch.zeros(mask.size(0), dtype=torch.float32, device=tok_lp.device).index_add_(0, rows, tok_lp.float())
        return sums.chunk(2, dim=0)


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _hidden(model, kwargs):
    """Last hidden states of the decoder (no LM head): the patched fused forward is bypassed."""
    return _base(model).get_decoder()(**kwargs).last_hidden_state


def _head(model):
    return _base(model).get_output_embeddings()


__all__ = ["RefineSettings", "SelfRefinedDPOTrainer", "MarginWindow", "smoothed_dpo_loss", "mixed_token_logps",
           "THRESHOLD_CONVENTIONS", "ThresholdConvention", "check_threshold_settings", "quantile_threshold",
           "released_threshold", "released_rank"]
