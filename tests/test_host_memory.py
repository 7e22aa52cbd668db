"""machine.reuse_host_memory: freed host memory is reused instead of faulted in afresh."""

from __future__ import annotations

import subprocess
import sys

# Allocate, touch and free a 64 MiB tensor, then tensors of 60, 56, 52 and 48 MiB; print the
# minor page faults of each round. With glibc's defaults every block is mmapped and unmapped,
# so each round faults in all its pages again (one per 4 KiB). Kept in the heap, the first
# block's pages are reused by the smaller ones that follow. Transparent huge pages are turned
# off for the process (prctl PR_SET_THP_DISABLE = 41): where they are on by default, one fault
# maps 2 MiB and the count of the default path would not show the fresh pages.
FAULTS_OF_A_REUSED_BLOCK = """
import ctypes, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
import torch
from planet.utils import reuse_freed_host_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_host_memory()
for mib in (64, 60, 56, 52, 48):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(mib * 2**18)  # float32, every page written
    del block
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def minor_faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_A_REUSED_BLOCK, mode],
                         capture_output=True, text=True, check=True)
    return [int(line) for line in out.stdout.split()]


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    pages = 48 * 2**20 // 4096  # of the smallest block
    default, reuse = minor_faults("default"), minor_faults("reuse")
    assert len(default) == len(reuse) == 5
    assert min(default) > pages // 2, default  # every round pays for fresh pages
    assert max(reuse[1:]) < pages // 20, reuse  # the freed block came back from the heap


def test_training_and_bench_apply_it_only_where_asked(monkeypatch):
    import planet.components as components
    from planet.bench import REFERENCE_OVERRIDES
    from planet.config import apply_overrides, make_config

    calls = []
    monkeypatch.setattr(components, "reuse_freed_host_memory",
                        lambda: calls.append(1) or True)
    config = make_config("smoke", {"env.name": "toy:dot", "device": "cpu"})
    components.build(config)
    assert calls == [1]
    config.machine.reuse_host_memory = False
    components.build(config)
    assert calls == [1]
    # The bench's reference path (a plain port) is built without it.
    reference = make_config("smoke", {"env.name": "toy:dot", "device": "cpu"})
    apply_overrides(reference, REFERENCE_OVERRIDES)
    components.build(reference)
    assert calls == [1]
