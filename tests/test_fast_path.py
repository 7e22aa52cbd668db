"""The fast path computes what the reference path computes, up to bf16 rounding.

Exact rewrites (sub-pixel and matmul forms of the transposed convs) on the device under test
(`--device`) are compared with PyTorch's own layers on the CPU, in float32 at 1e-5; the bf16
training and planning paths against float32 on the same device (the two must draw the same
noise), with the tolerances of planet.bench, whose comments give the reasons. No timing here:
speed lives in `planet bench`.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from planet.bench import (
    ACTION_ATOL,
    GRAD_COSINE_MIN,
    REFERENCE_OVERRIDES,
    Path_,
    _fill_replay,
    loss_check,
)
from planet.config import apply_overrides, make_config
from planet.models.decoders import (
    ConvDecoder,
    StrideTwoConvTranspose,
    conv_transpose_as_matmul,
    conv_transpose_as_subpixel_conv,
)


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


def test_fast_decoder_equals_plain_decoder_in_float32(device):
    torch.manual_seed(0)
    decoder = ConvDecoder(20, depth=4)  # the plain form on the CPU is the reference
    fast_decoder = copy.deepcopy(decoder).to(device)
    features = torch.randn(2, 3, 20)
    decoder.fast = False
    expected = decoder(features)
    grads_expected = torch.autograd.grad(expected.square().sum(), list(decoder.parameters()))
    fast_decoder.fast = True
    actual = fast_decoder(features.to(device))
    grads_actual = torch.autograd.grad(actual.square().sum(), list(fast_decoder.parameters()))
    assert actual.shape == (2, 3, 3, 64, 64)
    torch.testing.assert_close(actual.cpu(), expected, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads_actual, grads_expected, strict=True):
        torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)


def _paths(device, overrides=None):
    """Reference (float32, plain) and fast (bf16 forced, every switch on) on the same weights."""
    config = make_config("smoke", {"train.precision": "bfloat16", **(overrides or {})})
    ref_config = copy.deepcopy(config)
    apply_overrides(ref_config, REFERENCE_OVERRIDES)
    torch.manual_seed(0)
    ref = Path_(ref_config, 1, device, None)
    fast = Path_(config, 1, device, ref.model.state_dict())
    assert fast.dtype == torch.bfloat16 and ref.dtype == torch.float32
    return config, ref, fast


def test_losses_and_gradients_agree_between_reference_and_fast_path(device):
    config, ref, fast = _paths(device, {"train.batch_size": 6, "train.chunk_length": 12})
    replay = _fill_replay(config, 1, seed=0)
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
