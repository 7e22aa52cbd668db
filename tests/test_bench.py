"""`planet bench`: its JSON is complete and its figures and numerical checks add up.

No speed checks (speed depends on the machine); every number the bench derives from its
measurements is recomputed here, and its numerical checks are shown to pass on equal paths and
to fail on a path with a wrong weight.
"""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch

from planet.bench import (
    ACTION_ATOL,
    GRAD_COSINE_MIN,
    KL_ATOL,
    LOSS_RTOL,
    REFERENCE_OVERRIDES,
    BenchPath,
    loss_check,
    planner_check,
    random_replay,
)
from planet.cli import main
from planet.config import apply_overrides, make_config


@pytest.fixture(scope="module")
def bench_result(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    code = main(["bench", "--preset", "smoke", "--repeats", "2", "--env-steps", "2",
                 "--batch-envs", "2", "--json", str(path)])
    assert code == 0
    return json.loads(path.read_text())


def test_bench_smoke_writes_complete_json(bench_result):
    result = bench_result
    for key in ("cpu", "threads", "torch", "fast_dtype"):
        assert key in result["system"], key
    assert set(result["matmul_peak_flops_per_s"]) == {"reference", "fast"}
    figures = result["figures"]
    assert set(figures) == {"update", "plan_1", "plan_2", "act", "env_step", "episode"}
    for key in ("update", "plan_1", "plan_2"):
        figure = figures[key]
        for field in ("reference", "fast", "ratio", "flops", "fast_floor",
                      "reference_floor", "fast_flops_per_s"):
            assert figure[field] > 0, (key, field)
    assert figures["env_step"]["reference"] > 0 and figures["env_step"]["fast"] > 0
    assert result["peak_rss_bytes"]["fast"] > 0
    assert result["peak_rss_bytes"]["training_fast"] > 0
    assert set(result["checks"]["losses"]["losses"]) == {
        "total", "reconstruction", "reward", "kl", "overshooting"}


def test_bench_figures_follow_from_its_samples(bench_result):
    """Medians, ratios, FLOP rates, floors and the episode sum, recomputed from the JSON."""
    result, figures = bench_result, bench_result["figures"]
    peaks = result["matmul_peak_flops_per_s"]
    for key in ("update", "plan_1", "plan_2", "act"):
        figure = figures[key]
        for name in ("reference", "fast"):
            assert len(figure["samples"][name]) == result["repeats"], (key, name)
            assert figure[name] == pytest.approx(statistics.median(figure["samples"][name]))
        assert figure["ratio"] == pytest.approx(figure["fast"] / figure["reference"])
        if key != "act":
            for name in ("reference", "fast"):
                assert figure[f"{name}_flops_per_s"] == pytest.approx(
                    figure["flops"] / figure[name])
                assert figure[f"{name}_floor"] == pytest.approx(figure["flops"] / peaks[name])
    # The batched planner does the same work per env: two envs, twice the FLOPs.
    assert figures["plan_2"]["flops"] == pytest.approx(2 * figures["plan_1"]["flops"], rel=0.01)
    # One episode = C updates + (max_episode_steps / R) agent steps, each an act and an env step.
    config = result["config"]
    steps = config["env"]["max_episode_steps"] // figures["env_step"]["action_repeat"]
    for name in ("reference", "fast"):
        expected = (config["train"]["collect_interval"] * figures["update"][name]
                    + steps * (figures["act"][name] + figures["env_step"][name]))
        assert figures["episode"][name] == pytest.approx(expected)


def test_bench_numerical_checks_hold_within_their_tolerances(bench_result):
    """Loss terms, gradient cosine and planned actions against the tolerances themselves (not
    only the bench's own "ok"), and the loss terms against what the bench's random frames imply.
    """
    checks, config = bench_result["checks"], bench_result["config"]
    losses = checks["losses"]
    assert (losses["loss_rtol"], losses["kl_atol"]) == (LOSS_RTOL, KL_ATOL)
    for name, term in losses["losses"].items():
        relative = LOSS_RTOL * abs(term["reference"])
        tolerance = KL_ATOL if name in ("kl", "overshooting") else relative
        assert abs(term["fast"] - term["reference"]) <= max(tolerance, 1e-6), (name, term)
        assert term["ok"] is True, (name, term)
    assert GRAD_COSINE_MIN <= losses["grad_cosine"] <= 1 + 1e-6
    assert losses["ok"] is True
    train = config["train"]
    for path in ("reference", "fast"):
        term = {name: values[path] for name, values in losses["losses"].items()}
        # Eq. 3 terms add up to the total that the optimiser minimises.
        assert term["total"] == pytest.approx(
            term["reconstruction"] + train["reward_scale"] * term["reward"] + term["kl"]
            + train["overshooting_kl_scale"] * term["overshooting"], rel=1e-5)
        # Frames of uniform random bytes are uniform in [-0.5, 0.5) after preprocessing
        # (variance 1/12), so 0.5 * sum over 3 * 64 * 64 values of (mean - o)^2 is at least
        # 0.5 * 12288 / 12 = 512 for any predicted mean; an untrained decoder predicts near 0.
        assert 500 < term["reconstruction"] < 700, (path, term)
        assert term["kl"] >= train["free_nats"] - 1e-6  # clamped below at free nats
        assert term["overshooting"] == 0.0  # off in the smoke preset
    planner = checks["planner"]
    assert planner["atol"] == ACTION_ATOL
    assert 0 <= planner["max_abs_diff"] <= ACTION_ATOL and planner["ok"] is True


def _equal_paths() -> tuple[BenchPath, BenchPath]:
    """Reference (float32, plain) and fast (bf16, every switch on) paths on the same weights."""
    config = make_config("smoke", {"machine.precision": "bfloat16"})
    ref_config = copy.deepcopy(config)
    apply_overrides(ref_config, REFERENCE_OVERRIDES)
    torch.manual_seed(0)
    ref = BenchPath(ref_config, 1, torch.device("cpu"), None)
    fast = BenchPath(config, 1, torch.device("cpu"), ref.model.state_dict())
    return ref, fast


def test_loss_check_fails_when_the_fast_path_computes_a_wrong_number():
    ref, fast = _equal_paths()
    replay = random_replay(ref.config, 1, seed=0)
    chunks = replay.sample(4, 10, np.random.default_rng(0))
    assert loss_check(ref, fast, chunks, seed=0)["ok"]
    with torch.no_grad():  # a decoder bias off by 0.2: about 40 % more reconstruction error
        fast.model.decoder.deconvs[-1].bias.add_(0.2)
    check = loss_check(ref, fast, chunks, seed=0)
    assert not check["ok"]
    assert not check["losses"]["reconstruction"]["ok"] and not check["losses"]["total"]["ok"]
    assert check["grad_cosine"] < GRAD_COSINE_MIN
    assert check["losses"]["kl"]["ok"]  # the encoder and RSSM are untouched


def test_planner_check_is_exact_on_one_path_and_fails_on_a_reversed_reward():
    ref, fast = _equal_paths()
    for path in (ref, fast):  # rewards that differ clearly between candidates
        with torch.no_grad():
            path.model.reward_model.net[-1].weight.mul_(20.0)
    torch.manual_seed(1)
    belief = torch.randn(2, ref.model.rssm.belief_size)
    state = torch.randn(2, ref.model.rssm.state_size)
    same = planner_check(ref, ref, belief, state, seed=0)
    assert same["max_abs_diff"] == 0.0 and same["ok"]  # same seeds, same plan
    assert planner_check(ref, fast, belief, state, seed=0)["ok"]
    with torch.no_grad():  # the fast path now seeks the lowest reward
        fast.model.reward_model.net[-1].weight.neg_()
        fast.model.reward_model.net[-1].bias.neg_()
    check = planner_check(ref, fast, belief, state, seed=0)
    assert check["max_abs_diff"] > ACTION_ATOL and not check["ok"], check


def test_bench_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "planet.bench", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--json" in out.stdout


def test_child_peak_rss_is_its_own_not_the_parents():
    # Linux carries ru_maxrss over fork and exec; the training figure must not report the
    # bench process's own peak as the child's.
    import numpy as np

    from planet.measure import peak_rss

    ballast = np.ones(512 * 2**20, dtype=np.uint8)  # 512 MiB, touched
    parent = peak_rss()
    code = "from planet.measure import peak_rss; print(peak_rss())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = int(out.stdout.split()[-1])
    del ballast
    assert parent >= 512 * 2**20
    assert 0 < child < parent - 400 * 2**20, (child, parent)


def test_switches_must_be_boolean_config_fields():
    import pytest

    from planet.bench import parse_switches
    from planet.config import Config, ConfigError

    assert parse_switches(" machine.fast_deconv,machine.compile_planner ,", Config()) == [
        "machine.fast_deconv", "machine.compile_planner"]
    with pytest.raises(ConfigError, match="'model.cnn_depth' is not a boolean"):
        parse_switches("model.cnn_depth", Config())


def test_interleaved_syncs_before_and_after_every_timed_call():
    # On CUDA a call returns once its kernels are queued: the clock must stop after a sync.
    from planet.measure import interleaved

    events = []
    times = interleaved({"a": lambda: events.append("a"), "b": lambda: events.append("b")},
                        repeats=2, warmup=1, sync=lambda: events.append("sync"))
    assert events == ["sync", "a", "sync", "sync", "b", "sync"] * 3
    assert {name: len(samples) for name, samples in times.items()} == {"a": 2, "b": 2}


def test_switch_verdict_follows_the_rule():
    from planet.bench import MIN_ROUNDS, switch_verdict

    assert MIN_ROUNDS == 5
    assert switch_verdict([0.90, 0.91, 0.92, 0.93, 0.94])  # median 0.92, all under 1
    assert not switch_verdict([0.90, 0.91, 0.92])  # too few rounds
    assert not switch_verdict([0.96, 0.97, 0.98, 0.90, 0.90])  # median 0.96: not 5 % faster
    # Median 0.90, but the upper quartile (1.05) says one round in four was slower.
    assert not switch_verdict([0.80, 0.85, 0.90, 1.05, 1.10])


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats and --env-steps must be at least 1"),
    (["--env-steps", "0"], "--repeats and --env-steps must be at least 1"),
    (["--batch-envs", "1"], "--batch-envs must be at least 2"),
])
def test_bench_bad_sizes_are_one_line(args, message, capsys):
    assert main(["bench", "--preset", "smoke", *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
