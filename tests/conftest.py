"""Shared fixtures: a tiny config and one smoke-trained run reused across test modules."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from planet.config import Config, make_config  # noqa: E402


@pytest.fixture
def smoke_config() -> Config:
    """The `smoke` preset: tiny model and planner, same code paths as the paper config."""
    return make_config("smoke")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A cartpole-swingup run trained for 3 episodes with the smoke preset (about 20 s).

    Treat it as read-only: copy it (shutil.copytree) before changing anything in it.
    """
    from planet.train import train

    run_dir = tmp_path_factory.mktemp("smoke_run") / "run"
    config = make_config("smoke", {"train.episodes": 3})
    train(config, run_dir, progress=False, log=lambda *_: None)
    return run_dir
