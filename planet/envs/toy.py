"""A tiny pure-NumPy pixel environment for fast tests: move a dot to the centre.

`toy:dot`: the state is the dot's position p in [-1, 1]^2, drawn as a white disc (radius 0.3)
on a black 64x64 frame with a grey cross at the centre. The action a in [-1, 1]^2 moves the
dot by 0.2 * a. The reward is -||p|| each step, so a policy that heads for the centre earns far
more than a random walk. Episodes last 30 steps. One step costs microseconds, so learning
tests run in seconds.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class DotEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = "rgb_array", size: int = 64,
                 episode_steps: int = 30, speed: float = 0.2, radius: float = 0.3):
        self.render_mode = render_mode
        self.size = size
        self.episode_steps = episode_steps
        self.speed = speed
        self.radius = radius  # large, so the dot dominates the image and is learned in seconds
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.position = np.zeros(2, np.float32)
        grid = (np.arange(size) + 0.5) / size * 2 - 1
        self._ys, self._xs = np.meshgrid(grid, grid, indexing="ij")

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-0.9, 0.9, size=2).astype(np.float32)
        self.steps = 0
        return self.position.copy(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self.position = np.clip(self.position + self.speed * action, -1.0, 1.0)
        self.steps += 1
        reward = -float(np.linalg.norm(self.position))
        truncated = self.steps >= self.episode_steps
        return self.position.copy(), reward, False, truncated, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((self.size, self.size, 3), np.uint8)
        frame[self.size // 2, self.size // 2 - 3 : self.size // 2 + 4] = 128  # target cross
        frame[self.size // 2 - 3 : self.size // 2 + 4, self.size // 2] = 128
        x, y = self.position
        disc = (self._xs - x) ** 2 + (self._ys - y) ** 2 <= self.radius**2
        frame[disc] = 255
        return frame
