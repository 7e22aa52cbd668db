"""Everything a run needs, built from one config: device, precision, env, model, learner, agent.

    components = build(config)            # what train, evaluate, predict and watch start from
    components.agent.act(obs, explore=False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from planet.agent import Agent
from planet.config import Config
from planet.envs import make_env
from planet.learner import Learner
from planet.models.world_model import WorldModel
from planet.utils import (
    autocast_factory,
    choose_device,
    resolve_precision,
    reuse_freed_host_memory,
)


def env_from_config(config: Config, seed: int):
    """The run's environment (pixels or state, action repeat, episode length), seeded."""
    return make_env(
        config.env.name,
        seed=seed,
        action_repeat=config.env.action_repeat,
        image_size=config.env.image_size,
        symbolic=config.env.symbolic,
        max_episode_steps=config.env.max_episode_steps,
    )


@dataclass
class SpacesOnly:
    """Stands in for an env where only its spaces matter, such as a model built to read stored
    episodes (`planet predict`): no simulator, no renderer."""

    observation_space: Any
    action_space: Any


def spaces_of_episode(episode: dict[str, np.ndarray]) -> SpacesOnly:
    """The observation and action spaces a stored episode's rows imply: obs (N+1, *shape) uint8
    or float32, actions (N+1, A) in [-1, 1]."""
    from gymnasium.spaces import Box

    obs, action = episode["obs"], episode["action"]
    return SpacesOnly(Box(-np.inf, np.inf, obs.shape[1:], np.float32) if obs.dtype != np.uint8
                      else Box(0, 255, obs.shape[1:], np.uint8),
                      Box(-1.0, 1.0, action.shape[1:], np.float32))


@dataclass
class Components:
    """Everything a run needs, built from one config."""

    config: Config
    device: torch.device
    dtype: torch.dtype  # of the matrix products (autocast); weights stay float32
    autocast: Any
    env: Any
    model: WorldModel
    learner: Learner
    agent: Agent


def build(config: Config, env=None, log=None) -> Components:
    """Device, precision, env, model, learner and agent; `log` hears about planner compiles."""
    device = choose_device(config.device)
    if config.machine.reuse_host_memory and device.type == "cpu":
        reuse_freed_host_memory()
    dtype = resolve_precision(config.machine.precision, device)
    autocast = autocast_factory(device, dtype)
    env = env if env is not None else env_from_config(config, config.seed)
    action_size = int(np.prod(env.action_space.shape))
    model = WorldModel(config.model, action_size, env.observation_space.shape,
                       config.machine).to(device)
    learner = Learner(model, config.train, device, autocast)
    agent = Agent(model, config, device, autocast, log)
    return Components(config, device, dtype, autocast, env, model, learner, agent)
