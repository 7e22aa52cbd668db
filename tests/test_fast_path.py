"""Each fast path in planet.fast_paths computes what its plain form computes.

Exact rewrites (sub-pixel and matmul forms of the transposed convs, the tanh, the squared-error
sum, the channels-last layout) on the device under test (`--device`) are compared with PyTorch's
own functions on the CPU, in float32 at 1e-5 or tighter; the bf16 training and planning paths
against float32 on the same device (the two must draw the same noise), with the tolerances of
planet.bench, whose comments give the reasons. No timing here: speed lives in `planet bench`.
"""

from __future__ import annotations

import copy
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from planet import fast_paths
from planet.bench import (
    ACTION_ATOL,
    GRAD_COSINE_MIN,
    REFERENCE_OVERRIDES,
    BenchPath,
    loss_check,
    random_replay,
)
from planet.config import apply_overrides, make_config
from planet.fast_paths import (
    StrideTwoConvTranspose,
    conv_transpose_as_matmul,
    conv_transpose_as_subpixel_conv,
    noise_bytes,
    squared_error_sum,
    tanh,
)
from planet.models.decoders import ConvDecoder
from planet.models.encoder import ConvEncoder
from planet.models.world_model import WorldModel


@pytest.mark.parametrize("kernel,size,cin,cout", [(5, 5, 8, 4), (6, 13, 4, 3), (4, 7, 3, 5),
                                                  (3, 1, 2, 2)])
def test_subpixel_conv_equals_transposed_conv(kernel, size, cin, cout, device):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(cin, cout, kernel, stride=2)  # the reference, on the CPU
    x = torch.randn(3, cin, size, size, requires_grad=True)
    expected = deconv(x)
    inputs = [t.detach().to(device).requires_grad_() for t in (x, deconv.weight, deconv.bias)]
    actual = conv_transpose_as_subpixel_conv(*inputs)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.cpu(), expected, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(expected)
    grads_expected = torch.autograd.grad(expected, [x, deconv.weight, deconv.bias], upstream)
    grads_actual = torch.autograd.grad(actual, inputs, upstream.to(device))
    for got, want in zip(grads_actual, grads_expected, strict=True):
        torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("subpixel", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel,size,cin,cout", [(5, 5, 4, 3), (6, 7, 3, 2)])
def test_stride_two_conv_transpose_has_exact_gradients(kernel, size, cin, cout, channels_last,
                                                       subpixel, device):
    """gradcheck in float64: the hand-wired backward is the true derivative of the forward."""
    torch.manual_seed(0)
    x = torch.randn(2, cin, size, size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(cin, cout, kernel, kernel, dtype=torch.float64)
    bias = torch.randn(cout, dtype=torch.float64)
    reference = [t.clone().requires_grad_() for t in (x, weight, bias)]  # on the CPU
    inputs = [t.to(device).requires_grad_() for t in (x, weight, bias)]
    x = inputs[0]
    expected = torch.nn.functional.conv_transpose2d(*reference, stride=2)
    actual = StrideTwoConvTranspose.apply(*inputs, subpixel)
    torch.testing.assert_close(actual.cpu(), expected)
    assert torch.autograd.gradcheck(
        lambda *tensors: StrideTwoConvTranspose.apply(*tensors, subpixel), inputs
    )
    # With constant weights only the input's gradient is asked of convolution_backward.
    upstream = torch.randn_like(expected)
    (grad_x,) = torch.autograd.grad(
        StrideTwoConvTranspose.apply(x, inputs[1].detach(), inputs[2].detach(), subpixel), [x],
        upstream.to(device),
    )
    (want,) = torch.autograd.grad(expected, [reference[0]], upstream)
    torch.testing.assert_close(grad_x.cpu(), want)


def test_matmul_equals_transposed_conv_on_a_1x1_map(device):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(16, 6, 5, stride=2)  # the reference, on the CPU
    hidden = torch.randn(4, 16)
    expected = deconv(hidden[:, :, None, None])
    actual = conv_transpose_as_matmul(hidden.to(device), deconv.weight.to(device),
                                      deconv.bias.to(device))
    torch.testing.assert_close(actual.detach().cpu(), expected.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_decoder_equals_plain_decoder_in_float32(channels_last, device):
    torch.manual_seed(0)
    decoder = ConvDecoder(20, depth=4, channels_last=False)  # plain NCHW on the CPU: reference
    fast_decoder = copy.deepcopy(decoder).to(device)
    fast_decoder.fast, fast_decoder.channels_last = True, channels_last
    features = torch.randn(2, 3, 20)
    expected = decoder(features)
    grads_expected = torch.autograd.grad(expected.square().sum(), list(decoder.parameters()))
    actual = fast_decoder(features.to(device))
    grads_actual = torch.autograd.grad(actual.square().sum(), list(fast_decoder.parameters()))
    assert actual.shape == (2, 3, 3, 64, 64)
    torch.testing.assert_close(actual.cpu(), expected, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads_actual, grads_expected, strict=True):
        torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)


def test_the_fast_deconv_switch_selects_the_fast_form(monkeypatch):
    """machine.fast_deconv reaches the decoder: on, it runs fast_paths.decoder_deconvs; off, not."""
    calls = []
    original = fast_paths.decoder_deconvs

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fast_paths, "decoder_deconvs", counted)
    for fast in (False, True):
        config = make_config("smoke", {"machine.fast_deconv": fast})
        model = WorldModel(config.model, action_size=1, obs_shape=(3, 64, 64),
                           machine=config.machine)
        calls.clear()
        model.decoder(torch.randn(2, model.rssm.features_size))
        assert len(calls) == int(fast), fast


def test_channels_last_encoder_and_plain_decoder_equal_nchw(device):
    """machine.channels_last changes the memory order only: same outputs and gradients."""
    torch.manual_seed(0)
    encoder = ConvEncoder(64, depth=4, channels_last=False)  # NCHW on the CPU: reference
    decoder = ConvDecoder(20, depth=4, channels_last=False)
    obs = torch.rand(2, 3, 3, 64, 64) - 0.5
    features = torch.randn(2, 3, 20)
    for reference, inputs in ((encoder, obs), (decoder, features)):
        ours = copy.deepcopy(reference).to(device)
        ours.channels_last = True
        expected = reference(inputs)
        actual = ours(inputs.to(device))
        torch.testing.assert_close(actual.cpu(), expected, atol=1e-5, rtol=1e-5)
        grads_expected = torch.autograd.grad(expected.square().sum(),
                                             list(reference.parameters()))
        grads_actual = torch.autograd.grad(actual.square().sum(), list(ours.parameters()))
        for got, want in zip(grads_actual, grads_expected, strict=True):
            torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)


def test_gru_tanh_matches_torch_tanh_in_value_and_gradient(device):
    """The GRU's candidate uses 2 sigmoid(2x) - 1 (faster on CPU); it must stay a tanh."""
    x = torch.cat([torch.linspace(-60, 60, 2001), torch.tensor([0.0, 1e-6, -1e-6])])
    reference = torch.tanh(x)  # on the CPU
    x = x.to(device).requires_grad_(True)
    ours = tanh(x)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    ours, grad = ours.detach().cpu(), grad.cpu()
    assert torch.allclose(ours, reference, atol=3e-7, rtol=0)
    assert torch.allclose(grad, 1 - reference**2, atol=1e-6, rtol=0)
    assert ours.min().item() == -1.0 and ours.max().item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_squared_error_sum_matches_mse_loss_in_value_and_gradient(dtype, device):
    """The memory-saving reconstruction error against F.mse_loss(reduction="sum")."""
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(5, 4, 3, 8, 8, generator=generator) - 0.5
    # Channels-last frames, as the decoder returns them.
    frames = torch.randn(20, 3, 8, 8, generator=generator).to(dtype)
    frames = frames.contiguous(memory_format=torch.channels_last)
    # Ours on the device under test, the reference (mse_loss) on the CPU.
    ours = frames.clone().to(device).requires_grad_()
    theirs = frames.clone().requires_grad_()
    value = squared_error_sum(ours.unflatten(0, (5, 4)), target.to(device))
    expected = torch.nn.functional.mse_loss(
        theirs.unflatten(0, (5, 4)).float(), target, reduction="sum"
    )
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    (0.3 * value).backward()
    (0.3 * expected).backward()
    assert ours.grad.dtype == dtype and ours.grad.shape == frames.shape
    assert torch.allclose(ours.grad.float().cpu(), theirs.grad.float(), rtol=1e-2, atol=1e-6)
    with pytest.raises(ValueError, match="no gradient to its target"):
        squared_error_sum(ours.unflatten(0, (5, 4)), target.to(device).requires_grad_())


def test_squared_error_sum_holds_only_the_residual_for_backward(device):
    generator = torch.Generator().manual_seed(1)
    target = (torch.rand(3, 2, 3, 8, 8, generator=generator) - 0.5).to(device)
    prediction = torch.randn(3, 2, 3, 8, 8, generator=generator).bfloat16().to(device)
    prediction.requires_grad_()
    expected_grad = (2 * (prediction.detach().float() - target)).bfloat16()
    value = squared_error_sum(prediction, target)
    target_alive = weakref.ref(target)
    del target  # the float32 frames: the graph must not keep them until the backward pass
    assert target_alive() is None
    saved = value.grad_fn.saved_tensors
    assert [(tensor.dtype, tuple(tensor.shape)) for tensor in saved] == [
        (torch.bfloat16, (3, 2, 3, 8, 8))
    ]
    value.backward()
    torch.testing.assert_close(prediction.grad, expected_grad, rtol=1e-2, atol=1e-6)


def test_noise_bytes_follow_the_torch_seed(device):
    torch.manual_seed(3)
    first = noise_bytes(torch.Size((5, 7)), device)
    torch.manual_seed(3)
    again = noise_bytes(torch.Size((5, 7)), device)
    assert first.shape == (5, 7) and first.dtype == torch.uint8
    assert first.device.type == device.type
    assert torch.equal(first, again)
    assert not torch.equal(first, noise_bytes(torch.Size((5, 7)), device))


def test_noise_bytes_are_uniform_in_every_byte_of_a_word(device):
    """Like torch.randint(0, 256): each of the 8 bytes cut from a 64-bit word is uniform.

    A draw over [0, 2**63) instead of all 64 bits would leave one byte of each word below 128.
    """
    torch.manual_seed(0)
    draws = noise_bytes(torch.Size((8 * 40_000,)), device).cpu().view(-1, 8).long()
    # 40000 draws per byte position, about 156 per value: a chi-square test against the
    # uniform distribution (255 degrees of freedom; 400 is beyond its 99.999th percentile).
    for position in range(8):
        counts = torch.bincount(draws[:, position], minlength=256).double()
        expected = counts.sum() / 256
        assert ((counts - expected) ** 2 / expected).sum() < 400, position


def _paths(device, overrides=None):
    """Reference (float32, plain) and fast (bf16 forced, every switch on) on the same weights."""
    config = make_config("smoke", {"machine.precision": "bfloat16", **(overrides or {})})
    ref_config = copy.deepcopy(config)
    apply_overrides(ref_config, REFERENCE_OVERRIDES)
    torch.manual_seed(0)
    ref = BenchPath(ref_config, 1, device, None)
    fast = BenchPath(config, 1, device, ref.model.state_dict())
    assert fast.dtype == torch.bfloat16 and ref.dtype == torch.float32
    return config, ref, fast


def test_losses_and_gradients_agree_between_reference_and_fast_path(device):
    config, ref, fast = _paths(device, {"train.batch_size": 6, "train.chunk_length": 12})
    replay = random_replay(config, 1, seed=0)
    chunks = replay.sample(6, 12, np.random.default_rng(0))
    check = loss_check(ref, fast, chunks, seed=0)
    for name, term in check["losses"].items():
        assert term["ok"], (name, term)
    assert check["grad_cosine"] >= GRAD_COSINE_MIN, check["grad_cosine"]
    assert check["ok"]


def test_planner_first_actions_agree_between_reference_and_fast_path(device):
    _, ref, fast = _paths(device)
    # Scale the reward head's last layer so that candidates differ clearly in return: then
    # bf16 rounding cannot reorder the top candidates much and the plans must agree.
    for path in (ref, fast):
        with torch.no_grad():
            path.model.reward_model.net[-1].weight.mul_(20.0)
    torch.manual_seed(1)
    belief = torch.randn(3, ref.model.rssm.belief_size, device=device)
    state = torch.randn(3, ref.model.rssm.state_size, device=device)
    actions = {}
    for name, path in (("ref", ref), ("fast", fast)):
        torch.manual_seed(2)
        actions[name] = path.planner(belief, state, torch.Generator(device).manual_seed(2))
    assert actions["fast"].shape == (3, 1)
    assert (actions["ref"] - actions["fast"]).abs().max() <= ACTION_ATOL, actions
    # Scoring itself: the same candidates get nearly the same returns on both paths.
    candidates = torch.rand(ref.config.planner.horizon, 3, 1, generator=torch.Generator()
                            .manual_seed(3)).to(device) * 2 - 1
    returns = {}
    for name, path in (("ref", ref), ("fast", fast)):
        torch.manual_seed(4)
        with torch.no_grad(), path.autocast():
            returns[name] = path.planner.evaluate(candidates, belief, state)
    torch.testing.assert_close(returns["fast"], returns["ref"], rtol=0.05, atol=0.05)
