"""The suite's Hydra app: `python -m experiments.run [experiment=<preset>] [group=choice ...] [key=value ...]`.

Examples:
    python -m experiments.run experiment=smoke
    python -m experiments.run experiment=demo
    python -m experiments.run --multirun method=dpo data.seed_fraction=0.05,0.2,1.0 seed=1,2
"""
from __future__ import annotations

import hydra
from omegaconf import OmegaConf

# A run without overrides gets the directory name "default" rather than an empty one.
OmegaConf.register_new_resolver("default_subdir", lambda s: s or "default", replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> None:
    from experiments.pipeline import launch

    launch(cfg)


if __name__ == "__main__":
    main()
