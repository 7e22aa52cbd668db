import numpy as np
import torch

from planet.data.preprocess import postprocess_obs, preprocess_obs
from planet.data.replay import quantise_frames


def test_five_bit_values_without_noise_are_the_32_bin_centres(device):
    images = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    obs = preprocess_obs(images.to(device), bit_depth=5, noise=False)
    values = torch.unique(obs).cpu()
    assert len(values) == 32
    expected = (torch.arange(32) + 0.5) / 32 - 0.5
    assert torch.allclose(values, expected)


def test_dequantisation_noise_stays_in_its_bin_and_in_range(device):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, device=device)
    obs = preprocess_obs(images, bit_depth=5, noise=True)
    assert obs.min() >= -0.5 and obs.max() < 0.5
    lower = torch.div(images, 8, rounding_mode="floor").float() / 32 - 0.5
    offset = obs - lower
    assert offset.min() >= 0 and offset.max() < 1 / 32
    # The noise really is spread across the bin, not a constant offset.
    assert offset.std() > 0.25 / 32


def test_round_trip_is_exact_on_quantised_frames(device):
    frames = quantise_frames(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), 5)
    assert set(np.unique(frames)) == set(range(0, 256, 8))
    tensor = torch.from_numpy(frames).to(device)
    back = postprocess_obs(preprocess_obs(tensor, 5, noise=True), 5)
    assert torch.equal(back, tensor)


def test_dequantisation_noise_fills_each_bin_evenly_with_256_levels(device):
    torch.manual_seed(0)
    images = torch.full((200, 3, 64, 64), 77, dtype=torch.uint8, device=device)  # bin 9 of 32
    offset = (preprocess_obs(images, bit_depth=5, noise=True) + 0.5) * 32 - 9  # u in [0, 1)
    levels = torch.round(offset * 256 - 0.5)  # k in 0..255
    assert torch.allclose(offset, (levels + 0.5) / 256, atol=1e-4)
    counts = torch.bincount(levels.long().flatten(), minlength=256)
    assert len(counts) == 256 and counts.min() > 0
    # 2.46M draws, about 9600 per level: a chi-square test against the uniform distribution
    # (255 degrees of freedom; 400 is beyond its 99.999th percentile).
    expected = counts.sum() / 256
    assert ((counts - expected) ** 2 / expected).sum() < 400
    assert abs(offset.mean().item() - 0.5) < 1e-3
    assert abs(offset.var().item() - 1 / 12) < 1e-3


def test_noise_bytes_follow_the_torch_seed(device):
    from planet.data.preprocess import noise_bytes

    torch.manual_seed(3)
    first = noise_bytes(torch.Size((5, 7)), device)
    torch.manual_seed(3)
    again = noise_bytes(torch.Size((5, 7)), device)
    assert first.shape == (5, 7) and first.dtype == torch.uint8
    assert first.device.type == device.type
    assert torch.equal(first, again)
    assert not torch.equal(first, noise_bytes(torch.Size((5, 7)), device))
