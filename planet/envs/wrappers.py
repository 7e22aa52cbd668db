"""Small observation wrappers shared by every environment family."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from planet.errors import EnvError  # noqa: F401 - re-exported: planet.envs.EnvError


class ChannelsFirst(gym.ObservationWrapper):
    """(H, W, 3) uint8 frames -> (3, H, W), the layout the model and replay use."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (channels, height, width), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observation.transpose(2, 0, 1))


class Float32Observation(gym.ObservationWrapper):
    """Flat state vectors as float32, for `--symbolic` runs."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        shape = env.observation_space.shape
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32)
