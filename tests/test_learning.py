"""Short learning tests: the world model fits data, and the agent beats chance on `toy:dot`."""

from __future__ import annotations

import numpy as np
import torch
from conftest import TOY_OVERRIDES

from planet.checkpoint import load_latest
from planet.components import build
from planet.config import make_config
from planet.data.replay import EpisodeReplay
from planet.envs import make_env
from planet.episodes import run_episodes


def test_world_model_fits_fixed_data():
    """200 updates on three fixed episodes must cut the reconstruction loss by more than 30 %.

    A wiring bug (decoder fed the wrong features, gradients cut, obs misaligned) stalls it.
    """
    torch.manual_seed(0)
    config = make_config("smoke", {"env.name": "toy:dot", "train.batch_size": 8})
    components = build(config)
    replay = EpisodeReplay()
    rng = np.random.default_rng(0)
    for seed in range(3):
        (episode,) = run_episodes([components.env], None, [seed], explore=True, rng=rng)
        replay.add(episode)
    losses = [
        components.learner.update(replay.sample(8, 10, rng))["reconstruction"]
        for _ in range(200)
    ]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert np.isfinite(losses).all()
    assert last < 0.7 * first, (first, last)


def test_agent_beats_the_random_policy_on_toy_dot(toy_run):
    """A short pixel run on toy:dot (3 random + 9 planned episodes, 540 updates), then 8
    noise-free episodes against random actions from the same starts.

    The reward is -||p|| per step for 30 steps; from a start uniform in [-0.9, 0.9]^2, a random
    walk keeps the dot about 0.7 from the centre (return about -23 on these starts), while
    heading straight for it reaches the centre in about 3 steps (return about -4). A margin of
    6 is three standard errors of the random policy's 8-episode mean (about 2), and well inside
    what a model that has learned where the dot is gains: 18-20 on seeds 1, 2 and 3 and 16 on
    seed 4 in our runs (float32; 17 for seed 4 in bf16). At 360 updates, about where the reward
    model and the prior become usable, seeds 2 and 3 gained only 6 and 3.
    """
    config = make_config("smoke", TOY_OVERRIDES)
    components = build(config)
    _, payload = load_latest(toy_run / "checkpoints")
    components.model.load_state_dict(payload["model"])
    seeds = list(range(100, 108))
    envs = [make_env("toy:dot", seed) for seed in seeds]
    torch.manual_seed(0)  # the planner's samples: the same whichever tests ran before
    planned = run_episodes(envs, components.agent, seeds, explore=False)
    random = run_episodes(envs, None, seeds, explore=True, rng=np.random.default_rng(0))
    planned_return = np.mean([e["reward"].sum() for e in planned])
    random_return = np.mean([e["reward"].sum() for e in random])
    assert planned_return > random_return + 6.0, (planned_return, random_return)
