"""Observation encoder: image o_t -> embedding e_t (paper Sec. 5 and appendix).

Four convolutions with kernel 4 and stride 2 take a 3 x 64 x 64 image to 256 x 2 x 2, flattened
to the 1024-d embedding. For symbolic (state-vector) observations a small MLP plays the same role.
"""

from __future__ import annotations

import torch
from torch import nn

from planet import fast_paths
from planet.models.layers import activation_layer, mlp


class ConvEncoder(nn.Module):
    """(..., 3, 64, 64) float images -> (..., embedding_size)."""

    def __init__(self, embedding_size: int = 1024, depth: int = 32, activation: str = "relu",
                 channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.convs = nn.Sequential(
            nn.Conv2d(3, depth, 4, stride=2), activation_layer(activation),  # 31 x 31
            nn.Conv2d(depth, 2 * depth, 4, stride=2), activation_layer(activation),  # 14 x 14
            nn.Conv2d(2 * depth, 4 * depth, 4, stride=2), activation_layer(activation),  # 6 x 6
            nn.Conv2d(4 * depth, 8 * depth, 4, stride=2), activation_layer(activation),  # 2 x 2
        )
        conv_features = 8 * depth * 2 * 2  # 1024 at the paper's depth 32
        # The paper's 1024-d embedding is the flattened conv output itself; other sizes project.
        self.project = (
            nn.Identity() if embedding_size == conv_features
            else nn.Linear(conv_features, embedding_size)
        )
        self.embedding_size = embedding_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch_shape = obs.shape[:-3]
        images = obs.reshape(-1, *obs.shape[-3:])  # (N, 3, 64, 64), N = prod(batch_shape)
        if images.shape[-3:] != (3, 64, 64):
            raise ValueError(f"ConvEncoder expects channels-first 64x64 RGB frames (..., 3, 64, "
                             f"64), got {tuple(obs.shape)}")
        images = fast_paths.conv_layout(images, self.channels_last)  # config machine.channels_last
        features = self.convs(images).flatten(1)  # (N, 1024)
        return self.project(features).reshape(*batch_shape, self.embedding_size)


class MLPEncoder(nn.Module):
    """(..., obs_size) state vectors -> (..., embedding_size), for `--symbolic` runs."""

    def __init__(self, obs_size: int, embedding_size: int, hidden_size: int = 200,
                 activation: str = "relu"):
        super().__init__()
        self.net = mlp(obs_size, hidden_size, embedding_size, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)
