"""`planet bench` runs on the smoke preset and writes JSON with every figure (no speed checks)."""

from __future__ import annotations

import json
import subprocess
import sys

from planet.cli import main


def test_bench_smoke_writes_complete_json(tmp_path):
    path = tmp_path / "bench.json"
    code = main(["bench", "--preset", "smoke", "--repeats", "1", "--env-steps", "2",
                 "--batch-envs", "2", "--json", str(path)])
    assert code == 0
    result = json.loads(path.read_text())
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
    assert figures["episode"]["fast"] > 0
    assert result["peak_rss_bytes"]["fast"] > 0
    assert result["peak_rss_bytes"]["training_fast"] > 0
    assert result["checks"]["losses"]["ok"] and result["checks"]["planner"]["ok"]
    assert set(result["checks"]["losses"]["losses"]) >= {"total", "reconstruction", "kl"}


def test_bench_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "planet.bench", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--json" in out.stdout


def test_child_peak_rss_is_its_own_not_the_parents():
    # Linux carries ru_maxrss over fork and exec; the training figure must not report the
    # bench process's own peak as the child's.
    import numpy as np

    from planet.bench import peak_rss

    ballast = np.ones(1536 * 2**20, dtype=np.uint8)  # 1.5 GiB, touched
    parent = peak_rss()
    code = "from planet.bench import peak_rss; print(peak_rss())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = int(out.stdout.split()[-1])
    del ballast
    assert parent >= 1536 * 2**20
    assert 0 < child < parent - 1024 * 2**20, (child, parent)


def test_switches_must_be_boolean_config_fields():
    import pytest

    from planet.bench import parse_switches
    from planet.config import Config, ConfigError

    assert parse_switches(" model.fast_deconv,planner.compile ,", Config()) == [
        "model.fast_deconv", "planner.compile"]
    with pytest.raises(ConfigError, match="'model.cnn_depth' is not a boolean"):
        parse_switches("model.cnn_depth", Config())


def test_interleaved_syncs_before_and_after_every_timed_call():
    # On CUDA a call returns once its kernels are queued: the clock must stop after a sync.
    from planet.bench import interleaved

    events = []
    times = interleaved({"a": lambda: events.append("a"), "b": lambda: events.append("b")},
                        repeats=2, warmup=1, sync=lambda: events.append("sync"))
    assert events == ["sync", "a", "sync", "sync", "b", "sync"] * 3
    assert {name: len(samples) for name, samples in times.items()} == {"a": 2, "b": 2}
