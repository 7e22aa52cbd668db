"""The world model: encoder, RSSM, observation model and reward model in one module.

Its parameters form the one list the optimiser updates (paper Sec. 3: all four are trained
jointly on the ELBO of `planet.objectives`).
"""

from __future__ import annotations

import torch
from torch import nn

from planet.config import MachineConfig, ModelConfig
from planet.models.decoders import ConvDecoder, MLPDecoder, RewardModel
from planet.models.encoder import ConvEncoder, MLPEncoder
from planet.models.rssm import RSSM, Rollout


class WorldModel(nn.Module):
    def __init__(self, config: ModelConfig, action_size: int, obs_shape: tuple[int, ...],
                 machine: MachineConfig | None = None):
        """`machine` picks the conv nets' fast forms (fast_deconv, channels_last), which compute
        the same function with the same weights."""
        super().__init__()
        machine = machine or MachineConfig()
        self.symbolic = len(obs_shape) == 1
        self.action_size = action_size
        self.obs_shape = tuple(obs_shape)
        if self.symbolic:
            self.encoder: nn.Module = MLPEncoder(
                obs_shape[0], config.embedding_size, config.hidden_size, config.activation
            )
        else:
            if tuple(obs_shape) != (3, 64, 64):
                raise ValueError(f"pixel observations must be (3, 64, 64), got {obs_shape}")
            self.encoder = ConvEncoder(
                config.embedding_size, config.cnn_depth, config.activation, machine.channels_last
            )
        self.rssm = RSSM(
            action_size=action_size,
            embedding_size=config.embedding_size,
            belief_size=config.belief_size,
            state_size=config.state_size,
            hidden_size=config.hidden_size,
            min_stddev=config.min_stddev,
            activation=config.activation,
        )
        features = self.rssm.features_size
        if self.symbolic:
            self.decoder: nn.Module = MLPDecoder(
                features, obs_shape[0], config.hidden_size, config.activation
            )
        else:
            self.decoder = ConvDecoder(
                features, config.cnn_depth, config.activation,
                fast=machine.fast_deconv, channels_last=machine.channels_last,
            )
        self.reward_model = RewardModel(features, config.reward_hidden_size, config.activation)

    def observe(self, obs: torch.Tensor, action: torch.Tensor) -> Rollout:
        """Filter sequences from the initial state: e_t = encoder(o_t), then the posterior unroll
        q(s_t | h_t, e_t) (Eq. 2 in the RSSM form of Eq. 4). obs (T, B, ...) preprocessed,
        action (T, B, A) where action[t] = a_{t-1} (zeros at t = 0, as replay stores it)."""
        embedding = self.encoder(obs)  # (T, B, E); the encoders take any leading shape
        belief, state = self.rssm.initial(action.shape[1], obs.device)
        return self.rssm.observe(embedding, action, belief, state)

    def open_loop(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Decoded means of an open-loop prediction: the posterior on the C observed steps
        `obs` (C, B, ...), then the prior p(s_t | h_t) rolled forward with the remaining
        actions, never seeing their frames. action (C + H, B, A) -> frames (C + H, B, ...)."""
        context = obs.shape[0]
        filtered = self.observe(obs, action[:context])
        features = [filtered.features]  # (C, B, F)
        if action.shape[0] > context:
            imagined = self.rssm.imagine(
                action[context:], filtered.beliefs[-1], filtered.states[-1]
            )
            features.append(imagined.features)  # (H, B, F)
        joined = torch.cat(features)  # (C + H, B, F)
        return self.decoder(joined)

