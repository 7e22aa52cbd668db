"""Pixel preprocessing (paper Sec. 5): keep `bit_depth` bits, add dequantisation noise, centre.

Frames stay uint8 in replay and on the way to the device; they become floats only here, on the
device, in a few in-place passes over one float buffer.

    uint8 x in [0, 255]  --quantise-->  bin index b = x >> (8 - bits)      in [0, 2**bits)
                         --dequantise-> (b + u) / 2**bits - 0.5, u ~ U(0, 1)  in [-0.5, 0.5)

u is drawn with 8 random bits, u = (k + 1/2) / 256 (see `preprocess_obs`).
"""

from __future__ import annotations

import torch

from planet import fast_paths


def preprocess_obs(obs_uint8: torch.Tensor, bit_depth: int = 5, noise: bool = True) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float in [-0.5, 0.5), quantised to `bit_depth` bits.

    With `noise`, adds uniform dequantisation noise of one bin width (1 / 2**bit_depth), so the
    model sees a continuous density over each bin instead of 2**bit_depth spikes. The noise has
    256 levels per bin, u = (k + 1/2) / 256 with k uniform in 0..255: finer than the bf16 the
    model computes in, and its variance is that of U(0, 1) to 1 part in 65536. The k are drawn
    from torch's default generator for the device, 8 per random 64-bit word
    (`planet.fast_paths.noise_bytes`).
    """
    if obs_uint8.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {obs_uint8.dtype}")
    bins = 2**bit_depth
    # In place on one float buffer: a training batch is 2500 frames, 123 MB per float copy.
    if not noise:
        images = (obs_uint8 >> (8 - bit_depth)).float()  # bin index b
        return images.add_(0.5).div_(bins).sub_(0.5)  # the bin centre
    # (b + (k + 1/2) / 256) / bins - 1/2 = (256 b + k) / (256 bins) + (1/2) / (256 bins) - 1/2
    images = fast_paths.noise_bytes(obs_uint8.shape, obs_uint8.device).float()  # k
    images.add_(obs_uint8 >> (8 - bit_depth), alpha=256)  # + 256 b
    scale = 1.0 / (256 * bins)
    return images.mul_(scale).add_(0.5 * scale - 0.5)


def to_model_input(obs: torch.Tensor, bit_depth: int) -> torch.Tensor:
    """What the encoder reads: frames (..., 3, 64, 64) uint8 through preprocess_obs (quantised,
    dequantisation noise, in [-0.5, 0.5)); state vectors (..., obs_size) as float32."""
    if obs.dtype == torch.uint8:
        return preprocess_obs(obs, bit_depth)
    return obs.float()


def to_display(obs: torch.Tensor) -> torch.Tensor:
    """Float images in [-0.5, 0.5) -> uint8 [0, 255], not quantised (videos of predictions)."""
    return ((obs + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
