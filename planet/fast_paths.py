"""Hardware fast paths: the same functions as the paper's plain forms, computed faster on a CPU.

The model and objective files call these through small hooks, so that they read like the paper;
everything here is about how a function is computed, not which function. Each entry says what
it computes, why it is faster (figures measured on 2 cores of an AMD EPYC with AVX-512 BF16,
torch 2.13, CPU build, with `planet bench` unless stated), and which config switch turns it
off. docs/performance.md has the whole picture; tests/test_fast_path.py compares each form with
the plain one.

    conv_layout        channels-last activations for the conv nets       machine.channels_last
    decoder_deconvs    the decoder's transposed convs as matmul and      machine.fast_deconv
                       sub-pixel convs, with a hand-wired backward
    tanh               tanh(x) as 2 sigmoid(2x) - 1 (GRU candidate)      always on
    squared_error_sum  the reconstruction error without float32 copies   always on
    noise_bytes        dequantisation noise from random 64-bit words     always on

Shapes: N images (time and batch folded together), C channels, K kernel size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# --- channels-last layout (machine.channels_last) ---------------------------------------------
def conv_layout(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """`images` (N, C, H, W) in channels-last (NHWC) memory order if `channels_last`, else as is.

    Same values and shape; only the memory order changes. NHWC is the layout oneDNN's fast CPU
    convolution kernels use, so the conv nets keep their activations in it. `--set
    machine.channels_last=false` gives plain NCHW; `planet bench --switches machine.channels_last`
    times the difference on the machine at hand.
    """
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


# --- the decoder's transposed convolutions (machine.fast_deconv) ------------------------------
def conv_transpose_as_matmul(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """A transposed conv applied to a 1 x 1 map is a matmul: (N, Cin) -> (N, Cout, K, K).

    out[n, o, y, x] = sum_i hidden[n, i] * weight[i, o, y, x] + bias[o]. oneDNN's deconvolution
    for this shape is 10-20x slower than the matmul on 2 CPU cores (planet bench).
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
    Same weights (Cin, Cout, K, K) as nn.ConvTranspose2d, same result up to rounding; dense
    stride-1 convs are the kernels oneDNN runs fastest.
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
    - the last layer's forward (30 -> 64 pixels, 3 output channels) takes 0.10 s as a dense
      stride-1 conv plus 0.05 s for its pixel shuffle, against 0.30 s as a deconvolution;
    - the sub-pixel conv's own weight gradient (implicit padding) falls back to a plain gemm
      kernel: 0.55 s for the last layer, against 0.07 s for the transposed conv's;
    - oneDNN's deconvolution backward takes about 0.1 s more per layer when it also computes
      the bias gradient (0.30 against 0.19 s for the second layer); the sum takes a few ms.
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


def decoder_deconvs(deconvs: nn.Sequential, hidden: torch.Tensor,
                    channels_last: bool) -> torch.Tensor:
    """deconvs(hidden[:, :, None, None]) for ConvDecoder's stack: (N, 1024) -> (N, 3, 64, 64).

    `deconvs` is [ConvT k5, act, ConvT k5, act, ConvT k6, act, ConvT k6], all stride 2 (1 -> 5
    -> 13 -> 30 -> 64 pixels). The same layers and weights are evaluated as a matmul (first
    layer, 1 x 1 input) and `StrideTwoConvTranspose` (the others): the second and last layers
    run forward as sub-pixel convs, the third as a deconvolution (as a sub-pixel conv a whole
    update is 6 % slower, or no faster with the transposed conv's backward: 0.99x, paired).
    Against the plain nn.ConvTranspose2d stack, paired in one process, a whole update takes
    0.85 x 0.94 = 0.80x the time at the paper configuration (0.88 x 0.91 = 0.80x at the cpu
    preset): the first factor from the forward and backward forms, the second from the bias
    gradient. `--set machine.fast_deconv=false` runs the plain stack.
    """
    first, act1, second, act2, third, act3, last = deconvs
    x = conv_transpose_as_matmul(hidden, first.weight, first.bias)  # (N, 128, 5, 5)
    x = act1(conv_layout(x, channels_last))
    x = conv_transpose_fast(second, x, subpixel=True)  # 5 -> 13 pixels
    # Layout before the activation, so that the activation's output, which autograd saves
    # for both the activation and the next conv, is the only copy kept (a layout copy
    # after it would be saved too).
    x = act2(conv_layout(x, channels_last))
    x = act3(conv_transpose_fast(third, x, subpixel=False))  # 13 -> 30 pixels
    return conv_transpose_fast(last, x, subpixel=True)  # 30 -> 64 pixels, (N, 3, 64, 64)


# --- tanh as a sigmoid (always on) ----------------------------------------------------------
def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1, within 2e-7 of torch.tanh in float32.

    On the CPU above (timed alone) torch.tanh of a (1000, 200) float32 tensor takes 480 us and
    this form 230 us; the GRU cell's candidate calls it once per step, 120 times per planning
    call at the paper's sizes. No switch: it is the same function (tests/test_fast_path.py).
    """
    return torch.sigmoid(2 * x) * 2 - 1


# --- the reconstruction error's memory (always on) ------------------------------------------
class SquaredErrorSum(torch.autograd.Function):
    """sum((prediction - target)^2) in float32, for a bf16 or float32 prediction (T, B, ...).

    Same value and gradient as F.mse_loss(prediction.float(), target, reduction="sum") (the
    gradient up to one rounding to the prediction's dtype), with less memory. It works one time
    step at a time, so no float32 copy of the whole prediction is made (120 MB at the paper's
    batch of 2500 bf16 frames). For the backward pass it keeps only the residual
    prediction - target, in the prediction's dtype, so the caller can free the float32 target
    (123 MB) before calling backward(). The target gets no gradient.
    """

    @staticmethod
    def forward(ctx, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.requires_grad:
            raise ValueError("SquaredErrorSum gives no gradient to its target")
        residual = torch.empty_like(prediction)  # prediction - target, in the prediction's dtype
        total = prediction.new_zeros((), dtype=torch.float32)
        for step in range(prediction.shape[0]):
            difference = prediction[step].float() - target[step]  # float32, one step
            total += difference.square().sum()
            residual[step] = difference
        ctx.save_for_backward(residual)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (residual,) = ctx.saved_tensors
        return residual * (2 * grad), None  # d/dp sum (p - t)^2 = 2 (p - t)


def squared_error_sum(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum((prediction - target)^2) as a float32 scalar; prediction (T, B, ...), target alike.

    Through `SquaredErrorSum`, which keeps only the residual for the backward pass, so that the
    float32 frames can be freed before it: a training update at the paper's batch peaks 93 MB
    lower in resident memory, at the same speed. No switch: same value, and the same gradient
    up to one rounding to the prediction's dtype.
    """
    return SquaredErrorSum.apply(prediction, target)


# --- dequantisation noise from random bytes (always on) -------------------------------------
def noise_bytes(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Uniform random uint8 of `shape`, drawn from torch's default generator on `device`.

    Each random 64-bit word gives 8 of them. torch's CPU `uniform_` draws one number at a time
    on one thread: about 60 ms for the cpu preset's 12.6M pixels, the largest elementwise cost
    of its update. With one 64-bit draw per 8 pixels `preprocess_obs` takes 33 ms instead of
    86-97 ms, and the update 6 % less time (paired A/B). No switch: the noise it makes has 256
    levels per bin, finer than the bf16 the model computes in (docs/choices.md).
    """
    count = shape.numel()
    words = torch.empty((count + 7) // 8, dtype=torch.int64, device=device)
    words.random_(-(2**63), 2**63 - 1)  # all 64 bits uniform
    return words.view(torch.uint8)[:count].view(shape)
