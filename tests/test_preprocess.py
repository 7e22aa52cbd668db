import numpy as np
import torch

from planet.data.preprocess import preprocess_obs, to_model_input
from planet.data.replay import quantise_frames
from planet.fast_paths import noise_bytes


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


def test_noisy_frames_keep_the_bin_of_quantised_replay_frames(device):
    """Replay stores frames quantised to bin lower edges; the noisy floats stay in those bins."""
    frames = quantise_frames(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), 5)
    assert set(np.unique(frames)) == set(range(0, 256, 8))
    tensor = torch.from_numpy(frames).to(device)
    torch.manual_seed(0)
    obs = preprocess_obs(tensor, 5, noise=True)
    bins = torch.floor((obs + 0.5) * 32)  # bin index of each float, 0..31
    assert torch.equal((bins * 8).to(torch.uint8), tensor)


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


def test_noisy_frames_equal_the_plain_formula_with_the_same_noise_bytes(device):
    """The in-place form equals (b + (k + 1/2) / 256) / 2**bits - 1/2 written out plainly."""
    images = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(device)
    for bits in (5, 8, 1):
        torch.manual_seed(bits)
        obs = preprocess_obs(images, bit_depth=bits, noise=True)
        torch.manual_seed(bits)
        k = noise_bytes(images.shape, device).double()  # the bytes preprocess_obs drew
        b = torch.div(images, 2 ** (8 - bits), rounding_mode="floor").double()
        expected = (b + (k + 0.5) / 256) / 2**bits - 0.5
        assert obs.dtype == torch.float32 and obs.shape == images.shape
        torch.testing.assert_close(obs.double(), expected, atol=1e-7, rtol=0)


def test_model_input_quantises_frames_and_passes_state_vectors_as_float32(device):
    frames = torch.full((2, 3, 64, 64), 200, dtype=torch.uint8, device=device)
    torch.manual_seed(0)
    expected = preprocess_obs(frames, 5)
    torch.manual_seed(0)
    assert torch.equal(to_model_input(frames, 5), expected)
    state = torch.tensor([[0.25, -3.0]], dtype=torch.float64, device=device)
    as_input = to_model_input(state, 5)
    assert as_input.dtype == torch.float32 and as_input.tolist() == [[0.25, -3.0]]
