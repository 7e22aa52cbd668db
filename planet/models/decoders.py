"""Observation model p(o_t | h_t, s_t) and reward model p(r_t | h_t, s_t) (paper Sec. 3 and 5).

Both are Gaussians with unit variance, so each returns only its mean; the log-likelihoods live in
`planet.objectives`. Inputs are `features` = concat(belief h_t, state s_t), shape (..., 230).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from planet.models.encoder import activation_layer


def conv_transpose_as_matmul(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """A transposed conv applied to a 1 x 1 map is a matmul: (N, Cin) -> (N, Cout, K, K).

    out[n, o, y, x] = sum_i hidden[n, i] * weight[i, o, y, x] + bias[o]. oneDNN's deconvolution
    for this shape was 10-20x slower than the matmul on 2 CPU cores (planet bench).
    """
    cout, size = weight.shape[1], weight.shape[2]
    out = F.linear(hidden, weight.flatten(1).t())  # (N, Cout * K * K)
    return out.view(-1, cout, size, size) + bias.view(1, cout, 1, 1).to(out.dtype)


def conv_transpose_as_subpixel_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """A stride-2 transposed conv computed as a plain conv and a pixel shuffle (sub-pixel conv).

    Output pixel 2m + p (phase p in {0, 1}, per axis) of a stride-2 transposed conv with kernel
    K receives taps k = p + 2j only: y[2m + p] = sum_j x[m - j] * w[p + 2j], j < J = ceil(K/2).
    That is an ordinary cross-correlation of x (padded by J - 1) with the flipped sub-kernel
    w[p + 2(J - 1 - q)], q < J. The four phases become 4 * Cout output channels of one conv;
    pixel_shuffle interleaves them, and the crop drops the extra row/column of an odd K.
    Same weights (Cin, Cout, K, K) as nn.ConvTranspose2d, same result up to rounding
    (tests/test_fast_path.py); dense stride-1 convs are the kernels oneDNN runs fastest.
    """
    cin, cout, size = weight.shape[0], weight.shape[1], weight.shape[2]
    taps = (size + 1) // 2  # J
    padded = F.pad(weight, (0, 2 * taps - size, 0, 2 * taps - size))  # (Cin, Cout, 2J, 2J)
    # k = 2j + p -> (j, p); flip j so that q = J - 1 - j; channels ordered (Cout, py, px).
    sub = padded.view(cin, cout, taps, 2, taps, 2).flip(2, 4)
    sub = sub.permute(1, 3, 5, 0, 2, 4).reshape(4 * cout, cin, taps, taps)
    out = F.conv2d(x, sub, bias.repeat_interleave(4), padding=taps - 1)  # (N, 4 Cout, h, w)
    crop = 2 * x.shape[-1] - 2 + size  # (W - 1) * stride + K
    return F.pixel_shuffle(out, 2)[..., :crop, :crop]


class StrideTwoConvTranspose(torch.autograd.Function):
    """A stride-2 transposed conv whose forward and backward each take the faster oneDNN kernel.

    Forward, as a sub-pixel conv (`subpixel=True`, `conv_transpose_as_subpixel_conv`) or as the
    deconvolution. Backward, always the transposed conv's own input and weight gradients, on the
    same (x, weight), which are the only tensors saved, as for the plain layer; the bias gradient
    is a plain sum over (N, H, W). Times at the paper's batch of 2500 frames (bf16, 2 threads):
    - the last layer's forward (30 -> 64 pixels, 3 output channels) took 0.10 s as a dense
      stride-1 conv plus 0.05 s for its pixel shuffle, against 0.30 s as a deconvolution;
    - the sub-pixel conv's own weight gradient (implicit padding) fell back to a plain gemm
      kernel: 0.55 s for the last layer, against 0.07 s for the transposed conv's;
    - oneDNN's deconvolution backward took about 0.1 s more per layer when it also computed
      the bias gradient (0.30 against 0.19 s for the second layer); the sum takes a few ms.
    A whole paper-config update took 0.85x the time of the previous decoder with the first two
    (second layer a sub-pixel conv with autograd's backward, last layer a plain transposed
    conv; 14 pairs in one process), and 0.92-0.94x of that again with the third layer through
    here too and the bias gradients outside oneDNN (paired; 0.91x at the cpu preset, 40 pairs).
    Measured on CPU only; no GPU was at hand.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                subpixel: bool) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        if subpixel:
            return conv_transpose_as_subpixel_conv(x, weight, bias)
        return F.conv_transpose2d(x, weight, bias, stride=2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        if x.is_contiguous(memory_format=torch.channels_last):
            grad = grad.contiguous(memory_format=torch.channels_last)
        else:
            grad = grad.contiguous()
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None,  # no bias sizes: its gradient is the sum below
            [2, 2], [0, 0], [1, 1],  # stride, padding, dilation
            True, [0, 0], 1,  # transposed, output padding, groups
            [needs_x, needs_weight, False],
        )
        grad_bias = (
            grad.sum((0, 2, 3), dtype=torch.float32).to(weight.dtype) if needs_bias else None
        )
        return grad_x, grad_weight, grad_bias, None


def conv_transpose_fast(layer: nn.ConvTranspose2d, x: torch.Tensor,
                        subpixel: bool) -> torch.Tensor:
    """layer(x) for a stride-2 transposed conv, through StrideTwoConvTranspose.

    Under autocast the custom function sees the float32 parameters, so they are cast to the
    input's dtype here, as autocast would for the layer itself (their gradients flow back
    through the cast in float32).
    """
    return StrideTwoConvTranspose.apply(
        x, layer.weight.to(x.dtype), layer.bias.to(x.dtype), subpixel
    )


class ConvDecoder(nn.Module):
    """(..., features) -> mean image (..., 3, 64, 64).

    Dense to 1024 (a 1 x 1 map), then transposed convolutions 128 (k5), 64 (k5), 32 (k6), 3 (k6),
    stride 2: 1 -> 5 -> 13 -> 30 -> 64 pixels.

    With `fast` (the default, config model.fast_deconv), the same layers and weights are
    evaluated as a matmul (first layer, 1 x 1 input) and `StrideTwoConvTranspose` (the others):
    the second and last layers run forward as sub-pixel convs, the third as a deconvolution
    (as a sub-pixel conv a whole update was 6 % slower, or no faster with the transposed conv's
    backward: 0.99x, paired).
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

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch_shape = features.shape[:-1]
        hidden = self.dense(features.reshape(-1, features.shape[-1]))  # (N, 1024)
        if self.fast:
            images = self._fast_deconvs(hidden)
        else:
            images = self.deconvs(self._layout(hidden[:, :, None, None]))  # (N, 3, 64, 64)
        return images.reshape(*batch_shape, *images.shape[1:])

    def _fast_deconvs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Same function as self.deconvs: (N, 1024) -> (N, 3, 64, 64)."""
        layers = list(self.deconvs)
        first, last = layers[0], layers[-1]
        x = conv_transpose_as_matmul(hidden, first.weight, first.bias)  # (N, 128, 5, 5)
        x = layers[1](self._layout(x))
        x = conv_transpose_fast(layers[2], x, subpixel=True)  # 5 -> 13 pixels
        # Layout before the activation, so that the activation's output, which autograd saves
        # for both the activation and the next conv, is the only copy kept (a layout copy
        # after it would be saved too).
        x = layers[3](self._layout(x))
        x = layers[5](conv_transpose_fast(layers[4], x, subpixel=False))  # 13 -> 30 pixels
        return conv_transpose_fast(last, x, subpixel=True)  # 30 -> 64 pixels, (N, 3, 64, 64)


class MLPDecoder(nn.Module):
    """(..., features) -> mean state vector (..., obs_size), for `--symbolic` runs."""

    def __init__(self, features_size: int, obs_size: int, hidden_size: int = 200,
                 activation: str = "relu"):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features_size, hidden_size), activation_layer(activation),
            nn.Linear(hidden_size, hidden_size), activation_layer(activation),
            nn.Linear(hidden_size, obs_size),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class RewardModel(nn.Module):
    """(..., features) -> mean reward (...). Two hidden layers (official code: 100 units)."""

    def __init__(self, features_size: int, hidden_size: int = 100, activation: str = "relu"):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features_size, hidden_size), activation_layer(activation),
            nn.Linear(hidden_size, hidden_size), activation_layer(activation),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)
