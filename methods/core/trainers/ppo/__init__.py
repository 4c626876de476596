"""PPO with a critic: `math.py` the pure functions (hand-tested), `config.py` the settings (PPOConfig),
`modules.py` the actor, the critic and the rollout batch, `trainer.py` the loop and its checkpoints,
`spec.py` the `conf/trainer/ppo.yaml` entry; DEFAULTS.md sets other engines' defaults beside ours."""
