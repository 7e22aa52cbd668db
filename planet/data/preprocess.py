"""Pixel preprocessing (paper Sec. 5): keep `bit_depth` bits, add dequantisation noise, centre.

Frames stay uint8 in replay and on the way to the device; they become floats only here, on the
device, in one fused expression.

    uint8 x in [0, 255]  --quantise-->  bin index b = x >> (8 - bits)      in [0, 2**bits)
                         --dequantise-> (b + u) / 2**bits - 0.5, u ~ U(0, 1)  in [-0.5, 0.5)
"""

from __future__ import annotations

import torch


def preprocess_obs(
    obs_uint8: torch.Tensor, bit_depth: int = 5, noise: bool = True, generator=None
) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float in [-0.5, 0.5), quantised to `bit_depth` bits.

    With `noise`, adds uniform dequantisation noise of one bin width (1 / 2**bit_depth), so the
    model sees a continuous density over each bin instead of 2**bit_depth spikes.
    """
    if obs_uint8.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {obs_uint8.dtype}")
    bins = 2**bit_depth
    # In place on one float buffer: a training batch is 2500 frames, 123 MB per float copy.
    images = torch.empty(obs_uint8.shape, dtype=torch.float32, device=obs_uint8.device)
    if noise:
        images.uniform_(0.0, 1.0, generator=generator)  # u ~ U(0, 1)
    else:
        images.fill_(0.5)  # the bin centre
    images.add_(obs_uint8 >> (8 - bit_depth))  # + bin index b
    return images.div_(bins).sub_(0.5)


def postprocess_obs(obs: torch.Tensor, bit_depth: int = 5) -> torch.Tensor:
    """Float images in [-0.5, 0.5) -> uint8 in [0, 255], rounded to the bin's lower edge value."""
    bins = 2**bit_depth
    index = torch.floor((obs + 0.5) * bins).clamp(0, bins - 1)
    return (index * (256 // bins)).to(torch.uint8)


def to_display(obs: torch.Tensor) -> torch.Tensor:
    """Float images in [-0.5, 0.5) -> uint8 [0, 255], not quantised (videos of predictions)."""
    return ((obs + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
