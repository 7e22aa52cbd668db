"""Measuring a call's time, memory and arithmetic on a shared, noisy machine: the tools
`planet bench` is built on.

Timings alternate between the variants compared (`interleaved`), so that a busy machine slows
all of them alike, and are summarised by quartiles, not means. On CUDA every timed call is
bracketed by a synchronize (`device_sync`): kernels run asynchronously, and without it the host
clock would stop when the last kernel is queued, not when it has run. Memory is the host's
resident set (`peak_rss`, `PeakRSS`) or the CUDA allocator's peak (`CudaPeakMemory`).
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

CPU = torch.device("cpu")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux VmHWM; else ru_maxrss).

    VmHWM belongs to the address space, which exec replaces. ru_maxrss does not: Linux carries
    it over fork and exec, so a child started by a big parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Samples the process RSS every 5 ms in a thread while active: `with peak: ...`."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self):
        self.peak = max(self.peak, _rss_bytes())
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


class CudaPeakMemory:
    """The CUDA allocator's peak (bytes) while active: `with peak: ...`, like PeakRSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        torch.cuda.synchronize(self.device)
        self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))


def device_sync(device: torch.device) -> Callable[[], None] | None:
    """What makes the host clock honest on `device`: None on CPU (calls return when done)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def interleaved(
    functions: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
    monitors: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Run each function warmup + repeats times, alternating between them; wall times (s).

    `sync` (device_sync) runs before the clock starts and before it stops, so that asynchronous
    device work is inside the time of the call that queued it.
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(warmup + repeats):
        for name, function in functions.items():
            monitor = monitors.get(name) if monitors else None
            if sync is not None:
                sync()
            start = time.perf_counter()
            if monitor is not None:
                with monitor:
                    function()
            else:
                function()
            if sync is not None:
                sync()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
            if log is not None:
                log(f"  {name} {'warm-up' if round_index < warmup else 'run'} {elapsed:.4f} s")
    return times


def count_flops(function: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions (forward and backward) of one call."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        function()
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, size: int = 0, repeats: int = 5,
                device: torch.device = CPU) -> float:
    """Best FLOP/s of a square matmul in `dtype` over a few tries (the machine's peak).

    Default size: 1536 on CPU; 8192 on CUDA, where smaller products do not fill the GPU.
    """
    size = size or (8192 if device.type == "cuda" else 1536)
    sync = device_sync(device) or (lambda: None)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def system_info(dtype: torch.dtype, device: torch.device = CPU) -> dict[str, Any]:
    """What a timing depends on: CPU model and count, threads, versions, the fast dtype, the
    load average while measuring, and the GPU with its CUDA and cuDNN versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from planet.utils import cpu_has_fast_bf16

    info = {
        "device": device.type,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fast_dtype": str(dtype).replace("torch.", ""),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "load_average": os.getloadavg(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=properties.name, gpu_memory_bytes=properties.total_memory,
                    gpu_multiprocessors=properties.multi_processor_count,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def quartiles(values: list[float]) -> list[float]:
    """Lower quartile, median, upper quartile (all equal for a single value)."""
    if len(values) < 2:
        return [values[0]] * 3
    return statistics.quantiles(values, n=4, method="inclusive")
