"""The acting agent: filter each new observation into the posterior, then plan (Algorithm 1,
"data collection"). Works for B envs at once; each env keeps its own belief, state and action.

    o_t --enc--> e_t ; h_t = f(h_{t-1}, s_{t-1}, a_{t-1}) ; s_t ~ q(s_t | h_t, e_t)
    a_t = CEM(h_t, s_t) (+ N(0, 0.3^2) exploration noise while collecting, then clip)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from planet.config import Config
from planet.data.preprocess import to_model_input
from planet.models.world_model import WorldModel
from planet.planner import CEMPlanner


class Agent:
    def __init__(self, model: WorldModel, config: Config, device: torch.device, autocast,
                 log: Callable[[str], None] | None = None):
        self.model = model
        self.config = config
        self.device = device
        self.autocast = autocast
        self.planner = CEMPlanner(
            model.rssm, model.reward_model, model.action_size, config.planner, autocast, log,
            compile=config.machine.compile_planner,
        )
        self.reset(1)

    def reset(self, num_envs: int) -> None:
        """Start of an episode for `num_envs` envs: zero belief, state and previous action."""
        self.belief, self.state = self.model.rssm.initial(num_envs, self.device)
        self.action = torch.zeros(num_envs, self.model.action_size, device=self.device)

    @torch.no_grad()
    def observe(self, obs: np.ndarray) -> None:
        """Update the posterior with o_t, (B, 3, 64, 64) uint8 or (B, obs_size) float."""
        obs_tensor = to_model_input(torch.as_tensor(obs, device=self.device),
                                    self.config.train.bit_depth)
        with self.autocast():
            embedding = self.model.encoder(obs_tensor)
            self.belief, self.state, _ = self.model.rssm.observe_step(
                self.belief, self.state, self.action, embedding
            )
        self.belief, self.state = self.belief.float(), self.state.float()

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool, generator=None) -> np.ndarray:
        """Observe o_t and return a_t for each env, (B, A) in [-1, 1]."""
        self.observe(obs)
        action = self.planner(self.belief, self.state, generator)
        if explore and self.config.train.exploration_noise > 0:
            # Gaussian noise with std train.exploration_noise (0.3 in the paper; a std, not a
            # variance), then clip to the action bounds.
            noise = torch.randn(action.shape, device=action.device, generator=generator)
            action = action + self.config.train.exploration_noise * noise
        self.action = action.clamp(-1.0, 1.0).float()
        return self.action.cpu().numpy()
