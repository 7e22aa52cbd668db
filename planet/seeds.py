"""Named random streams: every env seed and private RNG of a run comes from (run seed, index,
stream), so that adding evaluations, images or videos never changes what training sees.

    episode_seed(config.seed, episode, Stream.COLLECT)   # the env and random actions of episode N
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """What a seed is for. The values are part of the run format: changing one changes runs."""

    COLLECT = 0  # the env (and the random actions) of collected episode N
    TRAINING_EVAL = 1  # the envs of the noise-free evaluation after episode N (index N*1000+i)
    EVALUATE = 2  # the envs of `planet evaluate` and `planet bench-learning`
    WATCH = 3  # the envs of `planet watch`
    TRAINING_EVAL_RNG = 10  # the torch RNG while evaluating during training (planner samples)
    IMAGES_RNG = 11  # the torch RNG while drawing the reconstruction strip
    EVALUATE_RNG = 102  # torch and numpy of `planet evaluate` (its planner samples)
    BENCH_EVAL_RNG = 103  # torch and numpy of `planet bench-learning`'s evaluation number N


def episode_seed(seed: int, index: int, stream: Stream | int = Stream.COLLECT) -> int:
    """A distinct, reproducible 32-bit seed per (run seed, episode or index, stream)."""
    return int(np.random.SeedSequence([seed, index, int(stream)]).generate_state(1)[0])


def check_seed_option(seed: int | None) -> None:
    """A command's --seed (None: not given) must fit numpy's and torch's seeds: 0 .. 2**32 - 1."""
    if seed is not None and not 0 <= seed < 2**32:
        from planet.errors import UsageError

        raise UsageError(f"--seed must be in 0 .. 2**32 - 1, got {seed}")
