"""Seeding, device and precision choice, torch.compile with a fallback, timers."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def choose_device(name: str = "auto") -> torch.device:
    """auto: CUDA when present, else CPU. Asking for cuda without one is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from planet.config import ConfigError

        why = (f"this torch build has no CUDA support (torch {torch.__version__})"
               if torch.version.cuda is None
               else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU")
        raise ConfigError(f"--device cuda was asked for, but {why}; use --device cpu or auto")
    return torch.device(name)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AVX-512 BF16 or AMX, where bf16 matrix products beat float32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# The first CUDA compute capability with bf16 tensor cores (Ampere). Older GPUs (V100, T4)
# accept bf16 tensors, and torch.cuda.is_bf16_supported() says yes for them, but emulate the
# arithmetic far slower than float32.
CUDA_NATIVE_BF16 = (8, 0)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 on GPUs with native bf16 (Ampere or newer) and on CPUs with fast bf16,
    else float32."""
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        native = torch.cuda.get_device_capability(device) >= CUDA_NATIVE_BF16
        return torch.bfloat16 if native else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


# glibc mallopt parameters (malloc.h) and the values reuse_freed_host_memory sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 256 * 2**20  # blocks below this come from the heap and are reused
TRIM_THRESHOLD_BYTES = 2**30  # free memory at the heap top kept up to this (mallopt takes an int)


@functools.cache
def reuse_freed_host_memory() -> bool:
    """Make glibc malloc keep freed blocks for reuse instead of returning them to the kernel.

    By default glibc serves blocks above 32 MB (at most) by mmap and unmaps them on free, so
    every update's large activations arrive as fresh pages: one page fault and one zeroing per
    4 KiB. Raising the mmap and trim thresholds keeps them in the heap. Process-wide; True when
    applied, False where malloc is not glibc's (macOS, musl), where nothing changes.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def autocast_factory(device: torch.device, dtype: torch.dtype):
    """A zero-argument factory of the autocast context (a no-op for float32).

    Weights, optimiser state and losses stay float32; only matrix products and convolutions run
    in `dtype`.
    """
    if dtype == torch.float32:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


class CompiledOrEager:
    """torch.compile(fn) that falls back to running fn eagerly, with a warning, if compiling fails.

    Inductor needs a C++ compiler (and Python's headers) on CPU and Triton on CUDA; a machine
    without them should still train, only slower. Shapes are static (one compile per input
    shape, e.g. 1 env while collecting and N envs in evaluation); weights stay inputs of the
    compiled graph, so training updates between calls are seen.

    `log`, when given, hears about each new input shape before its compile starts and again
    when it is done: the first call of a shape takes ~20 s, and a progress bar would otherwise
    seem to hang.
    """

    def __init__(self, fn: Callable, name: str, switch: str,
                 log: Callable[[str], None] | None = None):
        self.fn = fn
        self.name = name  # what is compiled, for the messages
        self.switch = switch  # the config field that turns it off
        self.log = log
        self.compiled: Callable | None = torch.compile(fn, dynamic=False)
        self.shapes_seen: set[tuple] = set()

    def __call__(self, *args):
        if self.compiled is None:
            return self.fn(*args)
        shapes = tuple(tuple(arg.shape) if isinstance(arg, torch.Tensor) else arg for arg in args)
        first_time = shapes not in self.shapes_seen
        if first_time and self.log is not None:
            listed = ", ".join(str(shape) for shape in shapes)
            self.log(f"{self.name}: compiling for input shapes {listed}; about 20 s the first "
                     f"time, later runs reuse Inductor's cache on disk (--set {self.switch}=false "
                     "turns it off)")
        start = time.perf_counter()
        try:
            result = self.compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly
            if not first_time:  # compiled and ran for these shapes before: not the compiler
                raise
            self.compiled = None
            compiler = os.environ.get("CXX", "g++")
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            warnings.warn(
                f"torch.compile of the {self.name} failed, so it runs eagerly (slower): "
                f"{type(error).__name__}: {first_line}. "
                f"On CPU it needs a C++ compiler ({compiler}) and Python headers, e.g. "
                "`sudo apt-get install -y g++ python3-dev`; turn it off with "
                f"--set {self.switch}=false.",
                RuntimeWarning, stacklevel=2,
            )
            return self.fn(*args)
        if first_time:
            self.shapes_seen.add(shapes)
            if self.log is not None:
                self.log(f"{self.name}: compiled in {time.perf_counter() - start:.1f} s")
        return result


class Timer:
    """Accumulates wall time per name: `with timer("update"): ...`; `totals` and `counts`."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def __call__(self, name: str, count: bool = True):
        """Time the block under `name`; count=False adds its time without counting a call."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - start
            self.counts[name] += int(count)

    def reset(self) -> None:
        self.totals.clear()
        self.counts.clear()
