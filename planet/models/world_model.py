"""The world model: encoder, RSSM, observation model and reward model in one module.

Its parameters form the one list the optimiser updates (paper Sec. 3: all four are trained
jointly on the ELBO of `planet.objectives`).
"""

from __future__ import annotations

from torch import nn

from planet.config import ModelConfig
from planet.models.decoders import ConvDecoder, MLPDecoder, RewardModel
from planet.models.encoder import ConvEncoder, MLPEncoder
from planet.models.rssm import RSSM


class WorldModel(nn.Module):
    def __init__(self, config: ModelConfig, action_size: int, obs_shape: tuple[int, ...]):
        super().__init__()
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
                config.embedding_size, config.cnn_depth, config.activation, config.channels_last
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
                fast=config.fast_deconv, channels_last=config.channels_last,
            )
        self.reward_model = RewardModel(features, config.reward_hidden_size, config.activation)
