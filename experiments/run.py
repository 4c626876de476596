"""The suite's Hydra app: `python -m experiments.run [experiment=<preset>] [group=choice ...] [key=value ...]`.

Examples:
    python -m experiments.run experiment=smoke
    python -m experiments.run experiment=demo
    python -m experiments.run --multirun method=dpo data.seed_fraction=0.05,0.2,1.0 seed=1,2
"""
from __future__ import annotations

import hydra
from omegaconf import OmegaConf

MAX_SUBDIR = 96


def run_subdir(overrides: str) -> str:
    """The directory name of a run from its overrides: "default" for none; "/" never nests folders;
    past MAX_SUBDIR characters, a readable prefix and a hash of the whole string, so the same command
    still maps to the same directory (the full config is in the run's config.yaml)."""
    import hashlib

    name = (overrides or "default").replace("/", "_")
    if len(name) <= MAX_SUBDIR:
        return name
    return f"{name[:MAX_SUBDIR - 10].rstrip(',')}--{hashlib.sha256(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("default_subdir", run_subdir, replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from experiments.pipeline import launch

    # the run directory is Hydra's output directory, whichever of run_dir / hydra.run.dir was given
    with open_dict(cfg):
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    launch(cfg)


def _quiet_other_ranks() -> None:
    """Under several processes only the main one keeps Hydra's record and log in the run directory
    (every file of a run is written once); hydra.* overrides do not change the run's directory name."""
    import sys

    from methods.core import dist

    if not dist.is_main():
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=stdout"]


if __name__ == "__main__":
    _quiet_other_ranks()
    main()
