"""Loading a trained run for `evaluate`, `predict` and `watch` (drawing and videos: planet.media,
the model's predictions as pictures: planet.predictions).

    run = load_run("runs/cartpole-swingup/cpu-s0")       # config.json + newest checkpoint
    run.agent.act(obs, explore=False)                   # a ready agent (model in eval mode)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planet.checkpoint import (
    CheckpointError,
    check_fits_config,
    checkpoint_episode,
    is_checkpoint_file,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    load_model_weights,
)
from planet.components import Components, build
from planet.config import Config, apply_overrides
from planet.run_files import load_run_config


@dataclass
class LoadedRun:
    """A run folder with its config and a model restored from one of its checkpoints."""

    run_dir: Path
    config: Config
    components: Components
    checkpoint: Path
    episodes: int  # episodes collected when the checkpoint was written
    env_steps: int  # env steps (action repeat included) trained on
    config_hash: str = ""  # of config.json as the run wrote it, before `overrides`
    overrides: dict[str, Any] = field(default_factory=dict)  # load_run's, e.g. the device

    @property
    def model(self):
        return self.components.model

    @property
    def agent(self):
        return self.components.agent

    def load_newer_checkpoint(self) -> bool:
        """For watching a run that is still training: load the run folder's newest checkpoint
        into the model when its name says it covers more episodes than the one loaded. Returns
        whether it did. A newest file that cannot be used (pruned meanwhile, damaged, another
        model's) leaves the loaded weights as they were; the next call tries again."""
        newest = list_checkpoints(self.run_dir / "checkpoints")
        if not newest or checkpoint_episode(newest[0]) <= self.loaded_episode():
            return False
        path = newest[0]
        try:
            payload = load_checkpoint(path)
            check_fits_config(self.config, payload, path, self.run_dir / "config.json")
            load_model_weights(self.model, payload, path, self.run_dir / "config.json")
        except CheckpointError:
            return False
        self.model.eval()
        self.checkpoint, self.episodes, self.env_steps = path, *trained(payload, path)
        return True

    def loaded_episode(self) -> int:
        """Episodes of the loaded checkpoint, from its name (the payload's for a file the user
        named otherwise)."""
        if is_checkpoint_file(self.checkpoint):
            return checkpoint_episode(self.checkpoint)
        return self.episodes

    def summary(self) -> dict[str, Any]:
        """Provenance for the JSON files the commands write."""
        return {
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "episodes_trained": self.episodes,
            "env_steps_trained": self.env_steps,
            "env": self.config.env.name,
            "config_hash": self.config_hash,
            "overrides": self.overrides,
            "device": str(self.components.device),
        }


def load_run(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    overrides: dict[str, Any] | None = None,
    env=None,
    warn=print,
) -> LoadedRun:
    """Read RUN_DIR/config.json, build the model and load the newest (or the named) checkpoint.

    `overrides` may change fields that leave the model alone (e.g. env.max_episode_steps).
    Raises TrainError for a missing run folder and CheckpointError for a missing, damaged or
    incompatible checkpoint, each with a one-line message.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    config_hash = config.hash()  # identifies the run's config, whatever is overridden here
    overrides = {**(overrides or {}), **({"device": device} if device is not None else {})}
    if overrides:
        apply_overrides(config, overrides)
    if checkpoint is None:
        loaded = load_latest(run_dir / "checkpoints", warn=warn)
        if loaded is None:
            damaged = len(list_checkpoints(run_dir / "checkpoints"))
            if damaged:
                raise CheckpointError(f"no readable checkpoint in {run_dir / 'checkpoints'} "
                                      f"({damaged} damaged, see the warnings above)")
            raise CheckpointError(
                f"no checkpoint in {run_dir / 'checkpoints'}; train first "
                f"(planet train --resume {run_dir})"
            )
        path, payload = loaded
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} not found; omit --checkpoint to load "
                                  f"the newest in {run_dir / 'checkpoints'}")
        payload = load_checkpoint(path)
    check_fits_config(config, payload, path, run_dir / "config.json")
    components = build(config, env, log=warn)
    load_model_weights(components.model, payload, path, run_dir / "config.json")
    components.model.eval()
    return LoadedRun(run_dir, config, components, path, *trained(payload, path), config_hash,
                     overrides)


def trained(payload: dict, path: Path) -> tuple[int, int]:
    """(episodes, env steps) a checkpoint was trained on; a checkpoint from before these were
    saved counts the episodes its name gives."""
    named = checkpoint_episode(path) if is_checkpoint_file(path) else 0
    return int(payload.get("episode", named)), int(payload.get("env_steps", 0))
