"""Which number format `machine.precision=auto` picks on each kind of device (no GPU needed:
the CUDA device's capability is stubbed, as torch would report it)."""

import pytest
import torch

from planet import utils
from planet.utils import resolve_precision

CUDA = torch.device("cuda")


@pytest.mark.parametrize("capability,expected", [
    ((6, 0), torch.float32),  # P100: no bf16 at all
    ((7, 0), torch.float32),  # V100: bf16 emulated, slower than float32
    ((7, 5), torch.float32),  # T4
    ((8, 0), torch.bfloat16),  # A100
    ((8, 9), torch.bfloat16),  # L4
    ((9, 0), torch.bfloat16),  # H100, H200
])
def test_auto_precision_on_cuda_takes_bf16_only_where_it_is_native(monkeypatch, capability,
                                                                   expected):
    asked = []

    def capability_of(device):
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # says yes anyway
    assert resolve_precision("auto", CUDA) == expected
    assert asked == [CUDA]  # the run's device, not whichever is current


@pytest.mark.parametrize("fast_bf16,expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_on_cpu_follows_the_cpus_bf16_units(monkeypatch, fast_bf16, expected):
    monkeypatch.setattr(utils, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert resolve_precision("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize("device", [torch.device("cpu"), CUDA])
def test_an_explicit_precision_is_kept_on_any_device(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 0))
    monkeypatch.setattr(utils, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("bfloat16", device) == torch.bfloat16
    assert resolve_precision("float32", device) == torch.float32


def test_a_checkpoint_holds_the_gpus_generators_only_for_a_run_on_cuda(monkeypatch):
    """Reading them would start CUDA (and take GPU memory) in a CPU run on a GPU machine; a CPU
    checkpoint resumed on CUDA keeps the seeded GPU generators, and a CUDA one resumed on the
    CPU leaves the GPUs alone."""
    import numpy as np

    from planet.seeds import rng_state, set_rng_state

    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all",
                        lambda: calls.append("get") or [torch.zeros(8, dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(len(states)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    replay_rng = np.random.default_rng(0)
    on_cpu = rng_state(replay_rng, torch.device("cpu"))
    assert on_cpu["cuda"] == [] and calls == []
    on_cuda = rng_state(replay_rng, CUDA)
    assert len(on_cuda["cuda"]) == 1 and calls == ["get"]
    set_rng_state(on_cuda, replay_rng, torch.device("cpu"))
    set_rng_state(on_cpu, replay_rng, CUDA)
    assert calls == ["get"]
    set_rng_state(on_cuda, replay_rng, CUDA)
    assert calls == ["get", 1]
