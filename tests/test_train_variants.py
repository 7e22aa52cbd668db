"""Training runs beyond pixels of dm_control: symbolic observations and a Gymnasium env."""

from __future__ import annotations

import math

import pytest
from conftest import quiet

from planet.config import make_config
from planet.logging import read_metrics
from planet.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "overrides,steps_per_episode",
    [
        ({"env.name": "toy:dot", "env.symbolic": True}, 30),
        ({"env.name": "gym:Pendulum-v1", "env.max_episode_steps": 60}, 60),
    ],
)
def test_short_runs_train_and_log_finite_losses(tmp_path, overrides, steps_per_episode):
    config = make_config("smoke", {**overrides, "train.episodes": 3})
    summary = train(config, tmp_path / "run", progress=False, log=quiet)
    records = read_metrics(tmp_path / "run")
    assert [r["env_steps"] for r in records] == [steps_per_episode * (i + 1) for i in range(3)]
    assert summary["env_steps"] == 3 * steps_per_episode
    trained = records[-1]
    assert math.isfinite(trained["loss_total"]) and math.isfinite(trained["eval_return"])
    assert (tmp_path / "run" / "checkpoints" / "episode_000003.pt").exists()


def test_the_last_updates_device_work_is_billed_to_the_updates(tmp_path, monkeypatch):
    # On CUDA the last optimizer step is still queued when fit_world_model's loop ends; train
    # waits for it under "update" without counting an extra update. A stand-in for
    # torch.cuda.synchronize moves the timers' clock on by 1000 s, which shows where its time
    # goes without waiting for it.
    import time
    import types

    import planet.train
    import planet.utils

    skipped, waits = [0.0], []
    clock = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time)
                                     if not name.startswith("_")})
    clock.perf_counter = lambda: time.perf_counter() + skipped[0]
    monkeypatch.setattr(planet.utils, "time", clock)

    def slow_sync(device):
        return lambda: (waits.append(device), skipped.__setitem__(0, skipped[0] + 1000.0))

    monkeypatch.setattr(planet.train, "device_sync", slow_sync)
    config = make_config("smoke", {"env.name": "toy:dot", "env.symbolic": True,
                                   "train.episodes": 2, "train.seed_episodes": 1})
    train(config, tmp_path / "run", progress=False, log=quiet)
    trained = read_metrics(tmp_path / "run")[-1]
    assert len(waits) == 1
    assert trained["time_update"] >= 1000.0 > trained["time_collect"]
    updates = config.train.collect_interval
    assert trained["time_per_update"] == pytest.approx(trained["time_update"] / updates)
