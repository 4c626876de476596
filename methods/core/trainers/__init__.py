"""The trainer family: `conf/trainer/` entries instantiate a `TrainerSpec` (base.py) that validates itself
and trains through one shared stage (stage.py): DPO (dpo.py, `pair_loss` hook), reward model (reward.py,
`reward_loss` hook), SFT (sft.py), GRPO / RLOO (rl.py, TRL's critic-free trainers) and PPO with a critic
(ppo/). Heavy imports happen inside the hooks, not here."""
