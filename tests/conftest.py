"""Shared fixtures: a tiny config and one smoke-trained run reused across test modules.

`--device cuda` runs the device-independent tests (models, objectives, planner, agent, fast
path, preprocessing: the ones that take the `device` fixture) on a GPU, as benchmarks/gpu_check.sh
does; where a test compares with a reference, the reference stays on the CPU. The default is
the CPU, and CI runs everything there.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from planet.config import Config, make_config  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", choices=["cpu", "cuda"],
                     help="device of the tests that take the `device` fixture (default cpu)")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest):
    """The torch device of --device. On CUDA, float32 matrix products and convolutions are
    kept in true float32 (no TF32), so comparisons with a float32 CPU reference hold at the
    tolerances written for the CPU."""
    import torch

    name = request.config.getoption("--device")
    if name == "cuda":
        if not torch.cuda.is_available():
            pytest.exit("--device cuda, but torch finds no CUDA device", returncode=2)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(name)


@pytest.fixture
def cpu_only(device) -> None:
    """For a test of the CPU itself (a C++ compiler, oneDNN): skipped under --device cuda."""
    if device.type != "cpu":
        pytest.skip("tests the CPU path only")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a busy 2-core machine, OpenMP threads waiting for each other make
    tiny models ~100x slower (1 s instead of 3 ms per planner call, measured). Use it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet(*_) -> None:
    """A `log` that prints nothing."""


@pytest.fixture(autouse=True, scope="module")
def deterministic_mode_stays_in_its_module():
    """A run with machine.deterministic turns torch's deterministic algorithms on for the whole
    process (planet.utils.seed_everything): put them back after each test module."""
    import os

    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    if workspace is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


@pytest.fixture
def smoke_config() -> Config:
    """The `smoke` preset: tiny model and planner, same code paths as the paper config."""
    return make_config("smoke")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A cartpole-swingup run trained for 3 episodes with the smoke preset (about 20 s).

    Treat it as read-only: copy it (shutil.copytree) before changing anything in it.
    """
    run_dir = tmp_path_factory.mktemp("smoke_run") / "run"
    train_on_one_thread(make_config("smoke", {"train.episodes": 3}), run_dir)
    return run_dir


def train_on_one_thread(config: Config, run_dir) -> None:
    """Train a shared run on one thread, quietly: its numbers do not depend on which test
    asked for it first, and a busy 2-core machine does not slow it down (one_thread)."""
    import torch

    from planet.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, run_dir, progress=False, log=quiet)
    finally:
        torch.set_num_threads(threads)


# A toy:dot run just long enough to learn (3 random + 9 planned episodes, 540 updates).
TOY_OVERRIDES = {
    "env.name": "toy:dot",
    "train.episodes": 12,
    "seed": 1,
    "train.seed_episodes": 3,
    "train.collect_interval": 60,
    "train.batch_size": 16,
    "train.chunk_length": 10,
    "train.test_interval": 0,
    "train.image_log_interval": 0,
    "train.learning_rate": 3e-3,
    "planner.horizon": 5,
    "planner.iterations": 4,
    "planner.candidates": 100,
    "planner.top_candidates": 10,
    # float32 and one thread (toy_run): the same numbers on any CPU, with or without fast bf16.
    "machine.precision": "float32",
}


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """A toy:dot run trained with TOY_OVERRIDES (about a minute); read-only, like smoke_run."""
    run_dir = tmp_path_factory.mktemp("toy_run") / "run"
    train_on_one_thread(make_config("smoke", TOY_OVERRIDES), run_dir)
    return run_dir


# A toy:dot run of 2 short episodes (one planned), checkpoints 1 and 2: a few seconds.
TINY_OVERRIDES = {"env.name": "toy:dot", "train.episodes": 2, "train.seed_episodes": 1,
                  "env.max_episode_steps": 10}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A toy:dot run trained with TINY_OVERRIDES; read-only, like smoke_run."""
    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    train_on_one_thread(make_config("smoke", TINY_OVERRIDES), run_dir)
    return run_dir
