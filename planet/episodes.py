"""Running episodes: the agent (or uniform random actions) in one or several envs at once.

    (episode,) = run_episodes([env], agent, [seed], explore=True)     # collect, Alg. 1
    evaluate_policy(config, agent, episode)                            # noise-free, a batch of envs

An episode is a dict of arrays of length N + 1, aligned as in planet.data.replay: `obs[t]`,
the `action[t]` that led to it and the `reward[t]` it brought (index 0: the reset, zeros).
"""

from __future__ import annotations

import numpy as np

from planet.agent import Agent
from planet.components import env_from_config
from planet.config import Config
from planet.seeds import Stream, episode_seed, training_eval_index


def run_episodes(
    envs: list,
    agent: Agent | None,
    seeds: list[int],
    explore: bool,
    rng: np.random.Generator | None = None,
    on_step=None,
) -> list[dict[str, np.ndarray]]:
    """Run one episode in each env in lockstep; the agent plans for all of them in one batch.

    `agent=None` takes uniform random actions from `rng` (the seed episodes). `on_step(t)` runs
    before each batch of actions (t = 0, 1, ...) and once when every episode has ended (t = the
    longest episode's agent steps): for progress bars and crash tests. Returns one episode per
    env.
    """
    if agent is None and rng is None:
        raise ValueError("run_episodes: uniform random actions (agent=None) need an rng")
    observations = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    action_size = int(np.prod(envs[0].action_space.shape))
    records = [
        {"obs": [obs], "action": [np.zeros(action_size, np.float32)], "reward": [0.0]}
        for obs in observations
    ]
    active = [True] * len(envs)
    if agent is not None:
        agent.reset(len(envs))
    step = 0
    while any(active):
        batch_obs = np.stack(observations)  # (B, ...) one observation per env
        if on_step is not None:
            on_step(step)
        if agent is None:
            actions = rng.uniform(-1.0, 1.0, size=(len(envs), action_size)).astype(np.float32)
        else:
            actions = agent.act(batch_obs, explore=explore)
        for index, env in enumerate(envs):
            if not active[index]:
                continue
            obs, reward, terminated, truncated, _ = env.step(actions[index])
            observations[index] = obs
            records[index]["obs"].append(obs)
            records[index]["action"].append(actions[index].astype(np.float32))
            records[index]["reward"].append(float(reward))
            if terminated or truncated:
                active[index] = False
        step += 1
    if on_step is not None:
        on_step(step)
    return [
        {
            "obs": np.stack(record["obs"]),
            "action": np.stack(record["action"]),
            "reward": np.asarray(record["reward"], np.float32),
        }
        for record in records
    ]


def run_test_episodes(config: Config, agent: Agent, seeds: list[int]) -> list[dict]:
    """Noise-free episodes in fresh envs, one per seed, planned for as one batch."""
    envs = [env_from_config(config, seed) for seed in seeds]
    try:
        return run_episodes(envs, agent, seeds, explore=False)
    finally:
        for env in envs:
            env.close()


def evaluate_policy(
    config: Config, agent: Agent, episode: int, keep: list | None = None
) -> dict[str, float]:
    """The noise-free evaluation after `episode`: `train.test_episodes` envs in one batch, each
    seeded differently. The episodes are appended to `keep` when given (for videos)."""
    count = config.train.test_episodes
    seeds = [episode_seed(config.seed, training_eval_index(episode, i), Stream.TRAINING_EVAL)
             for i in range(count)]
    episodes = run_test_episodes(config, agent, seeds)
    if keep is not None:
        keep.extend(episodes)
    returns = [float(e["reward"].sum()) for e in episodes]
    return {"eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns))}
