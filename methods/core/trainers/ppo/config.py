"""`PPOConfig`: the PPO trainer's settings (`trainers.<role>.args` of `trainer=ppo`); the field comments
are the spec. Defaults are the embedded default's (SmolLM2-135M on 2 CPU cores); the other engines'
defaults, side by side, are in the README ("PPO").
"""
from __future__ import annotations

from dataclasses import dataclass, field

CRITICS = ("separate", "head")
OPTIMIZERS = ("adamw", "adafactor")


@dataclass
class PPOConfig:
    output_dir: str = "."  # checkpoints (set by the training stage)
    # ---- one update = one rollout batch, then ppo_epochs passes over it in shuffled mini-batches ----
    max_steps: int = 20  # PPO updates
    rollout_prompts: int = 16  # prompts per update and process, one response each
    ppo_epochs: int = 4
    mini_batch_size: int = 8  # responses per optimiser step (and process)
    forward_batch_size: int = 16  # responses per no-grad forward (old log-probs, reference, values)
    generation_batch_size: int = 64
    # ---- sampling (log-probs at rollout and at the update use the same temperature) ----
    temperature: float = 0.7
    top_p: float = 1.0  # 1.0: the log-probs are exactly the sampling distribution's
    max_new_tokens: int = 64
    # ---- optimisation ----
    learning_rate: float = 1.0e-6
    critic_learning_rate: float = 1.0e-5
    optim: str = "adamw"  # adamw | adafactor (TRL 0.11's PPO, as SER used)
    max_grad_norm: float = 1.0
    # ---- advantages and losses ----
    gamma: float = 1.0
    lam: float = 0.95  # GAE λ
    whiten_advantages: bool = True
    clip_eps: float = 0.2  # policy ratio clip
    value_clip: float = 0.2  # value clip around the rollout's values
    vf_coef: float = 0.1  # value loss weight when the critic is a head on the policy (one loss)
    # ---- KL to the reference (the initial policy), in the reward ----
    kl_coef: float = 0.05  # β; with adaptive_kl the controller's initial value
    kl_estimator: str = "k1"  # k1 = log π − log π_ref per token; k3 (Schulman's, ≥ 0)
    adaptive_kl: bool = False
    kl_target: float = 6.0  # TRL 0.11's adaptive controller (nats per sequence)
    kl_horizon: int = 10000
    missing_eos_penalty: float | None = None  # subtracted from the score of a response cut at max_new_tokens
    # ---- critic ----
    critic: str = "separate"  # separate: own backbone + scalar head; head: a value head on the policy's backbone
    critic_init: str | None = None  # separate critic's weights: a reward-model directory; null = the policy's init
    # ---- bookkeeping ----
    save_steps: int = 10
    save_total_limit: int = 1
    logging_steps: int = 1
    seed: int = 0
    use_cpu: bool = False
    disable_tqdm: bool = True
    report_to: list = field(default_factory=list)

    def __post_init__(self):
        from methods.core.trainers.ppo.math import KL_ESTIMATORS

        for name in ("max_steps", "rollout_prompts", "ppo_epochs", "mini_batch_size", "forward_batch_size",
                     "generation_batch_size", "max_new_tokens", "save_steps", "logging_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"args.{name}={v!r}: an integer >= 1")
        if self.critic not in CRITICS:
            raise ValueError(f"args.critic={self.critic!r}: choose one of {list(CRITICS)}")
        if self.optim not in OPTIMIZERS:
            raise ValueError(f"args.optim={self.optim!r}: choose one of {list(OPTIMIZERS)}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"args.kl_estimator={self.kl_estimator!r}: choose one of {sorted(KL_ESTIMATORS)}")
        if not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(f"args.temperature={self.temperature}, args.top_p={self.top_p}: need temperature > 0 "
                             "(PPO samples) and 0 < top_p <= 1")
        if self.mini_batch_size > self.rollout_prompts:
            raise ValueError(f"args.mini_batch_size={self.mini_batch_size} > args.rollout_prompts="
                             f"{self.rollout_prompts}: a mini-batch is part of one rollout batch")
        for name in ("clip_eps", "value_clip", "kl_coef", "learning_rate", "critic_learning_rate", "kl_target"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"args.{name}={v!r}: a number >= 0")
