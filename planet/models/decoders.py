"""Observation model p(o_t | h_t, s_t) and reward model p(r_t | h_t, s_t) (paper Sec. 3 and 5).

Both are Gaussians with unit variance, so each returns only its mean; the log-likelihoods live in
`planet.objectives`. Inputs are `features` = concat(belief h_t, state s_t), shape (..., 230).
"""

from __future__ import annotations

import torch
from torch import nn

from planet import fast_paths
from planet.models.layers import activation_layer, mlp


class ConvDecoder(nn.Module):
    """(..., features) -> mean image (..., 3, 64, 64).

    Dense to 1024 (a 1 x 1 map), then transposed convolutions 128 (k5), 64 (k5), 32 (k6), 3 (k6),
    stride 2: 1 -> 5 -> 13 -> 30 -> 64 pixels.

    With `fast` the same layers and weights are evaluated by `planet.fast_paths.decoder_deconvs`,
    a faster form of the same function on CPU. WorldModel passes config machine.fast_deconv
    (default True); the class's own default is the plain layers.
    """

    def __init__(self, features_size: int, depth: int = 32, activation: str = "relu",
                 fast: bool = False, channels_last: bool = True):
        super().__init__()
        self.fast = fast
        self.channels_last = channels_last
        self.dense = nn.Linear(features_size, 32 * depth)  # 1024 at depth 32
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(32 * depth, 4 * depth, 5, stride=2), activation_layer(activation),
            nn.ConvTranspose2d(4 * depth, 2 * depth, 5, stride=2), activation_layer(activation),
            nn.ConvTranspose2d(2 * depth, depth, 6, stride=2), activation_layer(activation),
            nn.ConvTranspose2d(depth, 3, 6, stride=2),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch_shape = features.shape[:-1]
        hidden = self.dense(features.reshape(-1, features.shape[-1]))  # (N, 1024)
        if self.fast:
            images = fast_paths.decoder_deconvs(self.deconvs, hidden, self.channels_last)
        else:
            one_by_one = fast_paths.conv_layout(hidden[:, :, None, None], self.channels_last)
            images = self.deconvs(one_by_one)  # (N, 1024, 1, 1) -> (N, 3, 64, 64)
        return images.reshape(*batch_shape, *images.shape[1:])


class MLPDecoder(nn.Module):
    """(..., features) -> mean state vector (..., obs_size), for `--symbolic` runs."""

    def __init__(self, features_size: int, obs_size: int, hidden_size: int = 200,
                 activation: str = "relu"):
        super().__init__()
        self.net = mlp(features_size, hidden_size, obs_size, activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class RewardModel(nn.Module):
    """(..., features) -> mean reward (...). Two hidden layers (official code: 100 units)."""

    def __init__(self, features_size: int, hidden_size: int = 100, activation: str = "relu"):
        super().__init__()
        self.net = mlp(features_size, hidden_size, 1, activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)
