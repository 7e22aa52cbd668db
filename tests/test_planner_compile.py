"""machine.compile_planner: the torch.compile'd rollout plans like the eager one, sees weight
updates, and falls back to eager (with a warning) where it cannot compile."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import pytest
import torch

from planet.config import PlannerConfig
from planet.models.decoders import RewardModel
from planet.models.rssm import RSSM
from planet.planner import CEMPlanner

ACTION_SIZE = 2


def make_planners(seed: int = 0, log=None, device=None):
    """Eager and compiled planners over the same small RSSM and reward model."""
    torch.manual_seed(seed)
    rssm = RSSM(ACTION_SIZE, embedding_size=16, belief_size=24, state_size=6, hidden_size=24)
    reward_model = RewardModel(rssm.features_size, hidden_size=16)
    rssm, reward_model = rssm.to(device), reward_model.to(device)
    with torch.no_grad():  # returns that differ clearly between candidates
        reward_model.net[-1].weight.mul_(20.0)
    config = PlannerConfig(horizon=5, iterations=3, candidates=64, top_candidates=8)
    eager = CEMPlanner(rssm, reward_model, ACTION_SIZE, config)
    compiled = CEMPlanner(rssm, reward_model, ACTION_SIZE, config, log=log, compile=True)
    return rssm, reward_model, eager, compiled


def returns_of(planner, actions, belief, state, seed):
    with torch.no_grad():
        generator = torch.Generator(device=belief.device).manual_seed(seed)
        return planner.evaluate(actions, belief, state, generator)


def test_compiled_rollout_matches_eager_and_follows_weight_updates(device):
    messages = []
    rssm, _, eager, compiled = make_planners(log=messages.append, device=device)
    torch.manual_seed(1)
    # Planning for 3 envs rolls out 3 x 64 candidates; scoring 192 sequences directly reuses
    # that compiled shape (each new shape compiles anew, ~10 s).
    belief = torch.randn(3, rssm.belief_size, device=device)
    state = torch.randn(3, rssm.state_size, device=device)
    many_beliefs = torch.randn(192, rssm.belief_size, device=device)
    many_states = torch.randn(192, rssm.state_size, device=device)
    actions = torch.rand(5, 192, ACTION_SIZE, device=device) * 2 - 1  # (H, N, A)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager fails the test
        before = returns_of(compiled, actions, many_beliefs, many_states, seed=2)
        expected = returns_of(eager, actions, many_beliefs, many_states, seed=2)
        torch.testing.assert_close(before, expected, rtol=1e-5, atol=1e-5)
        plans = [planner(belief, state, torch.Generator(device=device).manual_seed(3))
                 for planner in (eager, compiled)]
        torch.testing.assert_close(plans[1], plans[0], rtol=1e-5, atol=1e-5)
        assert plans[0].shape == (3, ACTION_SIZE)

        # A training update changes the weights in place: the compiled graph must not keep
        # the old ones as constants.
        with torch.no_grad():
            rssm.gru.hidden_gates.weight.add_(0.5)
        after = returns_of(compiled, actions, many_beliefs, many_states, seed=2)
        expected = returns_of(eager, actions, many_beliefs, many_states, seed=2)
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    assert (after - before).abs().max() > 1e-2
    assert compiled.imagine_features.compiled is not None  # it did not fall back
    # One shape, so one compile: announced before it starts (a progress bar stalls meanwhile)
    # and timed when done; the later calls of that shape say nothing.
    assert len(messages) == 2, messages
    assert messages[0].startswith("planner rollout: compiling for input shapes (5, 192, 2), "
                                  "(192, 24), (192, 6), (5, 192, 6)")
    assert "(--set machine.compile_planner=false turns it off)" in messages[0]
    assert re.fullmatch(r"planner rollout: compiled in \d+\.\d s", messages[1]), messages[1]


def test_compiled_rollout_under_bf16_autocast_is_close_to_eager(device):
    rssm, _, eager, compiled = make_planners(seed=4, device=device)
    torch.manual_seed(5)
    belief = torch.randn(2, rssm.belief_size, device=device)
    state = torch.randn(2, rssm.state_size, device=device)
    actions = torch.rand(5, 2, ACTION_SIZE, device=device) * 2 - 1
    with torch.autocast(device.type, dtype=torch.bfloat16):
        returns = [returns_of(p, actions, belief, state, seed=6) for p in (eager, compiled)]
    torch.testing.assert_close(returns[1], returns[0], rtol=0.02, atol=0.05)
    assert compiled.imagine_features.compiled is not None


# Without a C++ compiler Inductor cannot build its CPU kernels: the planner must still plan.
NO_COMPILER = """
import warnings, torch
from tests.test_planner_compile import make_planners
rssm, _, eager, compiled = make_planners()
belief, state = torch.zeros(1, rssm.belief_size), torch.zeros(1, rssm.state_size)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    planned = compiled(belief, state, torch.Generator().manual_seed(0))
reference = eager(belief, state, torch.Generator().manual_seed(0))
print("equal", bool(torch.equal(planned, reference)))
print("fell_back", compiled.imagine_features.compiled is None)
for warning in caught:
    if issubclass(warning.category, RuntimeWarning):
        print("warning", warning.message)
"""


def test_without_a_compiler_the_planner_runs_eagerly_and_says_why(tmp_path, cpu_only):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "CXX": "/nonexistent/c++", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", NO_COMPILER], capture_output=True, text=True,
                         env=env, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert "equal True" in lines and "fell_back True" in lines, out.stdout
    warning = next(line for line in lines if line.startswith("warning"))
    assert "planner rollout failed, so it runs eagerly" in warning
    assert "/nonexistent/c++" in warning and "machine.compile_planner=false" in warning


def test_compiled_or_eager_falls_back_only_when_a_new_shape_fails_to_compile():
    """A first call that fails (the compiler, even with an empty message) runs eagerly from
    then on; a failure on shapes that compiled and ran before is a real error, raised."""
    from planet.utils import CompiledOrEager

    def double(x):
        return 2 * x

    def broken_compiler(x):
        raise AssertionError()

    wrapped = CompiledOrEager(double, "doubler", "machine.compile_planner")
    wrapped.compiled = broken_compiler
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.equal(wrapped(torch.ones(2)), torch.full((2,), 2.0))
    assert wrapped.compiled is None
    assert "torch.compile of the doubler failed" in str(caught[0].message)
    assert "AssertionError: ." in str(caught[0].message)

    def out_of_memory(x):
        raise RuntimeError("out of memory")

    wrapped = CompiledOrEager(double, "doubler", "machine.compile_planner")
    wrapped.compiled = double  # stands in for a compiled function that has run for (2,)
    wrapped(torch.ones(2))
    wrapped.compiled = out_of_memory
    with pytest.raises(RuntimeError, match="out of memory"):  # not swallowed
        wrapped(torch.ones(2))
    assert wrapped.compiled is out_of_memory  # compiling stays on
