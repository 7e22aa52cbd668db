"""The acting agent: exploration noise, action bounds, and which action it filters with; and the
noise-free evaluation that runs it (planet.episodes.evaluate_policy). The agent's own tests run
on `--device` (the GPU check runs them on CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planet import episodes
from planet.bench import BenchPath
from planet.components import build
from planet.config import make_config

ACTION_SIZE = 2


@pytest.fixture
def agent(device):
    config = make_config("smoke")
    return BenchPath(config, ACTION_SIZE, device, None).agent


def frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 3, 64, 64), dtype=np.uint8)


def plan_constant(value: float):
    """A stand-in planner whose first action is `value` in every env and dimension."""
    return lambda belief, state, generator=None: torch.full((len(belief), ACTION_SIZE), value,
                                                            device=belief.device)


def test_exploration_noise_has_the_configured_std_and_actions_are_clipped(agent):
    agent.planner = plan_constant(0.0)
    agent.reset(500)
    assert np.array_equal(agent.act(frames(500), explore=False), np.zeros((500, ACTION_SIZE)))
    generator = torch.Generator(agent.device).manual_seed(0)
    noisy = agent.act(frames(500, 1), explore=True, generator=generator)
    assert noisy.std() == pytest.approx(agent.config.train.exploration_noise, abs=0.02)  # a std
    agent.planner = plan_constant(0.95)
    near_edge = agent.act(frames(500, 2), explore=True,
                          generator=torch.Generator(agent.device).manual_seed(1))
    assert near_edge.max() == 1.0 and near_edge.min() >= -1.0
    assert (near_edge == 1.0).mean() == pytest.approx(0.43, abs=0.05)  # P(N(0.95, 0.3) > 1)


def test_the_next_observation_is_filtered_with_the_action_just_taken(agent):
    # h_t = f(h_{t-1}, s_{t-1}, a_{t-1}): the belief after the second observation must be the
    # transition from the first posterior state under the action returned in between.
    agent.planner = plan_constant(0.5)
    agent.reset(3)
    taken = agent.act(frames(3), explore=False)
    belief, state = agent.belief.clone(), agent.state.clone()
    agent.observe(frames(3, 1))
    with torch.no_grad(), agent.autocast():
        taken_on_device = torch.as_tensor(taken, device=agent.device)
        expected = agent.model.rssm.transition(belief, state, taken_on_device).float()
        unchanged = agent.model.rssm.transition(belief, state,
                                                torch.zeros(3, ACTION_SIZE, device=agent.device))
    assert torch.allclose(agent.belief, expected, atol=1e-5)
    assert not torch.allclose(agent.belief, unchanged.float(), atol=1e-3)  # the action counts
    agent.reset(3)  # a new episode starts from zero belief, state and action
    assert agent.belief.abs().sum() == 0 and agent.action.abs().sum() == 0
    assert agent.state.abs().sum() == 0
    # Evaluation with 3 envs, then collecting with 1: the reset sizes every tensor anew.
    agent.reset(1)
    assert agent.belief.shape[0] == agent.state.shape[0] == agent.action.shape[0] == 1
    assert agent.act(frames(1, 2), explore=False).shape == (1, ACTION_SIZE)


def test_evaluation_is_noise_free_and_each_test_env_gets_its_own_seed(monkeypatch):
    """Two bugs of PlaNet ports: exploration noise left on at test time, and all test envs
    reset with one seed (so N test episodes are one episode N times)."""
    config = make_config("smoke", {"env.name": "toy:dot", "env.max_episode_steps": 6,
                                   "train.test_episodes": 3})
    agent = build(config).agent
    calls = []
    run_episodes = episodes.run_episodes

    def spy(envs, agent, seeds, explore, **kwargs):
        calls.append((list(seeds), explore))
        return run_episodes(envs, agent, seeds, explore, **kwargs)

    monkeypatch.setattr(episodes, "run_episodes", spy)
    kept: list[dict] = []
    after_4 = episodes.evaluate_policy(config, agent, episode=4, keep=kept)
    episodes.evaluate_policy(config, agent, episode=5)
    (seeds_4, explore_4), (seeds_5, explore_5) = calls
    assert explore_4 is False and explore_5 is False
    assert len(set(seeds_4)) == 3 and len(set(seeds_5)) == 3
    assert not set(seeds_4) & set(seeds_5)  # each evaluation draws new start states
    assert len({episode["obs"][0].tobytes() for episode in kept}) == 3  # three start frames
    returns = [float(episode["reward"].sum()) for episode in kept]
    assert after_4["eval_return"] == pytest.approx(np.mean(returns))
    assert after_4["eval_return_std"] == pytest.approx(np.std(returns))


class EndsAfter:
    """A stub env that terminates after `length` steps: obs [t, seed], reward t at step t."""

    def __init__(self, length: int):
        import gymnasium as gym

        self.length = length
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed: int):
        self.t, self.seed = 0, seed
        return np.array([0.0, seed], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, self.seed], np.float32)
        return obs, float(self.t), self.t >= self.length, False, {}


class CountingAgent:
    """Acts a = call number / 10 for every env, and records each batch it is asked about."""

    def __init__(self):
        self.batches = []

    def reset(self, num_envs: int) -> None:
        self.num_envs = num_envs

    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        self.batches.append(obs.copy())
        return np.full((self.num_envs, 1), len(self.batches) / 10, np.float32)


def test_envs_of_a_batch_that_end_at_different_steps_keep_their_own_rows():
    agent = CountingAgent()
    short, long = episodes.run_episodes([EndsAfter(3), EndsAfter(5)], agent, [7, 8],
                                        explore=False)
    assert [len(short["obs"]), len(long["obs"])] == [4, 6]  # N + 1 rows
    assert short["reward"].tolist() == [0, 1, 2, 3] and long["reward"].tolist() == [0, 1, 2, 3,
                                                                                      4, 5]
    # Row t holds the action that led to obs[t]: the t-th call's action.
    assert np.allclose(long["action"][:, 0], [0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert np.allclose(short["action"][:, 0], [0, 0.1, 0.2, 0.3])
    assert [obs[1] for obs in long["obs"]] == [8] * 6  # each env kept its own observations
    # The agent still plans for the ended env (one batch shape), on its last observation.
    assert len(agent.batches) == 5 and agent.batches[4][0].tolist() == [3, 7]
