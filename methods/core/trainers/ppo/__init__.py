"""PPO with a critic: `math.py` the pure functions (hand-tested), `trainer.py` the trainer."""
