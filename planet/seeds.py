"""Named random streams: every env seed and private RNG of a run comes from (run seed, index,
stream), so that adding evaluations, images or videos never changes what training sees; and the
state of every generator a run draws from, which a checkpoint saves (rng_state).

    episode_seed(config.seed, episode, Stream.COLLECT)   # the env and random actions of episode N
    with private_rng(device, episode_seed(config.seed, episode, Stream.IMAGES_RNG)): ...
"""

from __future__ import annotations

import contextlib
import random
from enum import IntEnum
from typing import Any

import numpy as np
import torch

from planet.config import MAX_TEST_EPISODES


class Stream(IntEnum):
    """What a seed is for. The values are part of the run format: changing one changes runs."""

    COLLECT = 0  # the env (and the random actions) of collected episode N
    TRAINING_EVAL = 1  # the envs of the evaluation after episode N (training_eval_index)
    EVALUATE = 2  # the envs of `planet evaluate` and `planet bench-learning`
    WATCH = 3  # the envs of `planet watch`
    TRAINING_EVAL_RNG = 10  # the torch RNG while evaluating during training (planner samples)
    IMAGES_RNG = 11  # the torch RNG while drawing the reconstruction strip
    EVALUATE_RNG = 102  # torch and numpy of `planet evaluate` (its planner samples)
    BENCH_EVAL_RNG = 103  # torch's RNG in `planet bench-learning`'s evaluation N (planner)


def training_eval_index(episode: int, i: int) -> int:
    """The index of episode i of the noise-free evaluation after training episode `episode`:
    N * MAX_TEST_EPISODES + i, so no two evaluations share an env seed (config
    train.test_episodes is at most MAX_TEST_EPISODES)."""
    return episode * MAX_TEST_EPISODES + i


def episode_seed(seed: int, index: int, stream: Stream | int = Stream.COLLECT) -> int:
    """A distinct, reproducible 32-bit seed per (run seed, episode or index, stream)."""
    return int(np.random.SeedSequence([seed, index, int(stream)]).generate_state(1)[0])


def check_seed_option(seed: int | None) -> None:
    """A command's --seed (None: not given) must fit numpy's and torch's seeds: 0 .. 2**32 - 1."""
    if seed is not None and not 0 <= seed < 2**32:
        from planet.errors import UsageError

        raise UsageError(f"--seed must be in 0 .. 2**32 - 1, got {seed}")


def rng_state(replay_rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """Every random generator a run draws from, as tensors and plain values (weights_only).
    The GPUs' generators only for a run on CUDA: reading them starts CUDA in the process."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
        "replay": replay_rng.bit_generator.state,
        # Env RNG needs no state: each episode resets its env with episode_seed(seed, episode).
    }


def set_rng_state(state: dict[str, Any], replay_rng: np.random.Generator,
                  device: torch.device) -> None:
    """The inverse of rng_state; the GPUs' generators only when the run continues on CUDA (a
    CPU checkpoint has none: they keep seed_everything's seeding)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    random.setstate(state["python"])
    replay_rng.bit_generator.state = state["replay"]


@contextlib.contextmanager
def private_rng(device: torch.device, seed: int):
    """Run a block on its own seeded torch RNG stream, leaving the training stream untouched.

    Used for evaluation (Stream.TRAINING_EVAL_RNG) and reconstruction images (Stream.IMAGES_RNG),
    so changing test_interval or image_log_interval on resume does not change training.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
