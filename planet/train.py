"""The collect/train loop (paper Algorithm 1), with crash-safe checkpoints and resume.

    Alg. 1: collect S seed episodes with uniform random actions
    Alg. 1: for each further episode:
        model fitting:   C times: draw B chunks of length L from replay, one update of the ELBO
        data collection: reset; each step: filter o_t into the posterior, plan with CEM,
                         add exploration noise, act R times (action repeat), store the episode
    every `test_interval` episodes: noise-free evaluation episodes (a batch of envs)

Run folder:
    config.json          resolved config        metrics.jsonl   one line per collected episode
    checkpoints/         episode_<N>.pt          episodes/       <index>_<length>.npz replay
    tb/                  TensorBoard events
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from planet.agent import Agent
from planet.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_latest,
    prune_checkpoints,
    save_checkpoint,
)
from planet.config import Config, flatten
from planet.data.preprocess import to_display
from planet.data.replay import EpisodeReplay
from planet.envs import make_env
from planet.learner import Learner, mean_metrics
from planet.logging import Logger
from planet.models.world_model import WorldModel
from planet.utils import (
    Timer,
    autocast_factory,
    choose_device,
    resolve_precision,
    seed_everything,
)

# Fields that may differ between a run and its resume: they change neither the model nor the
# data already collected. Any other difference is refused.
RESUMABLE_FIELDS = {
    "train.episodes",
    "train.test_interval",
    "train.test_episodes",
    "train.checkpoint_interval",
    "train.image_log_interval",
    "train.precision",
    "train.deterministic",
    "device",
    "preset",
}
MAX_NONFINITE_IN_A_ROW = 20


class TrainError(RuntimeError):
    """A problem with the run folder or its state, meant for the user."""


def episode_seed(seed: int, episode: int, purpose: int = 0) -> int:
    """A distinct, reproducible env seed per (run seed, episode, purpose: 0 train, 1 eval)."""
    return int(np.random.SeedSequence([seed, episode, purpose]).generate_state(1)[0])


def env_from_config(config: Config, seed: int):
    return make_env(
        config.env.name,
        seed=seed,
        action_repeat=config.env.action_repeat,
        image_size=config.env.image_size,
        symbolic=config.env.symbolic,
        max_episode_steps=config.env.max_episode_steps,
    )


@dataclass
class Components:
    """Everything a run needs, built from one config."""

    config: Config
    device: torch.device
    dtype: torch.dtype
    autocast: Any
    env: Any
    model: WorldModel
    learner: Learner
    agent: Agent


def build(config: Config, env=None) -> Components:
    device = choose_device(config.device)
    dtype = resolve_precision(config.train.precision, device)
    autocast = autocast_factory(device, dtype)
    env = env or env_from_config(config, config.seed)
    action_size = int(np.prod(env.action_space.shape))
    model = WorldModel(config.model, action_size, env.observation_space.shape).to(device)
    learner = Learner(model, config.train, device, autocast)
    agent = Agent(model, config, device, autocast)
    return Components(config, device, dtype, autocast, env, model, learner, agent)


def run_episodes(
    envs: list,
    agent: Agent | None,
    seeds: list[int],
    explore: bool,
    rng: np.random.Generator | None = None,
    on_frame=None,
) -> list[dict[str, np.ndarray]]:
    """Run one episode in each env in lockstep; the agent plans for all of them in one batch.

    `agent=None` takes uniform random actions from `rng` (the seed episodes). `on_frame(obs, t)`
    sees each batch of observations (for videos). Returns one replay episode per env, arrays of
    length N + 1 aligned as in planet.data.replay.
    """
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
        batch_obs = np.stack(observations)
        if on_frame is not None:
            on_frame(batch_obs, step, active)
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
    if on_frame is not None:
        on_frame(np.stack(observations), step, [True] * len(envs))
    return [
        {
            "obs": np.stack(record["obs"]),
            "action": np.stack(record["action"]),
            "reward": np.asarray(record["reward"], np.float32),
        }
        for record in records
    ]


def check_resume_config(saved: Config, requested: Config) -> list[str]:
    """Differences between a saved and a requested config; raises on any unsafe one."""
    old, new = flatten(saved.to_dict()), flatten(requested.to_dict())
    changed = [key for key in sorted(old) if old[key] != new.get(key)]
    unsafe = [key for key in changed if key not in RESUMABLE_FIELDS]
    if unsafe:
        details = "; ".join(f"{key}: {old[key]!r} -> {new[key]!r}" for key in unsafe)
        raise TrainError(
            "cannot resume: the config differs in fields that change the model or the data "
            f"({details}). Use a new --run-dir, or resume with the saved values."
        )
    return [f"{key}: {old[key]!r} -> {new[key]!r}" for key in changed]


def reconstruction_strip(learner: Learner, chunks, frames: int = 8) -> np.ndarray | None:
    """Truth (top) and reconstruction (bottom) of the first chunk, (2 * 64, frames * 64, 3)."""
    if chunks.obs.dtype != np.uint8:
        return None
    with torch.no_grad():
        obs, action, _ = learner.to_device(chunks)
        model = learner.model
        steps, batch = action.shape[:2]
        with learner.autocast():
            embedding = model.encoder(obs.flatten(0, 1)).unflatten(0, (steps, batch))
            belief, state = model.rssm.initial(batch, obs.device)
            rollout = model.rssm.observe(embedding, action, belief, state)
            recon = model.decoder(rollout.features[:, :1].flatten(0, 1)).float()
    count = min(frames, steps)
    truth = to_display(obs[:count, 0]).permute(2, 0, 3, 1).flatten(1, 2)  # (64, count*64, 3)
    pred = to_display(recon[:count]).permute(2, 0, 3, 1).flatten(1, 2)
    return torch.cat([truth, pred], dim=0).cpu().numpy()


def train(
    config: Config,
    run_dir: str | Path,
    progress: bool = True,
    log=print,
    fault_hook=None,
) -> dict[str, Any]:
    """Train (or resume) a run in `run_dir`; returns a summary.

    `fault_hook(learner, chunks)`, for tests, may alter a batch before an update.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"run dir {run_dir} exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = run_dir / "checkpoints"
    checkpoint_dir.mkdir(exist_ok=True)
    config_path = run_dir / "config.json"

    # --- resume or start ---
    loaded = load_latest(checkpoint_dir, warn=log) if config_path.exists() else None
    if config_path.exists() and loaded is not None:
        saved = Config.load(config_path)
        for change in check_resume_config(saved, config):
            log(f"resume: allowed change {change}")
    elif config_path.exists() and any(checkpoint_dir.glob("episode_*.pt")):
        raise TrainError(f"no readable checkpoint in {checkpoint_dir}; start a new --run-dir")
    seed_everything(config.seed, config.train.deterministic)
    components = build(config)
    model, learner, agent, env = (
        components.model, components.learner, components.agent, components.env
    )
    replay_rng = np.random.default_rng(config.seed)
    start_episode, env_steps, wall_offset = 0, 0, 0.0
    if loaded is not None:
        path, payload = loaded
        model.load_state_dict(payload["model"])
        learner.optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["torch_rng"])
        replay_rng.bit_generator.state = payload["replay_rng"]
        start_episode = int(payload["episode"])
        env_steps = int(payload["env_steps"])
        wall_offset = float(payload.get("wall_time", 0.0))
        learner.nonfinite_updates = int(payload.get("nonfinite_updates", 0))
        age = time.time() - path.stat().st_mtime
        log(f"resuming from {path.name}: {start_episode} episodes, {env_steps} env steps, "
            f"saved {age:.0f} s ago")
    config.save(config_path)
    # Episodes on disk past the checkpoint were collected after it: drop them (their updates
    # were lost with the kill), then reload the rest as the replay.
    episodes_dir = run_dir / "episodes"
    episodes_dir.mkdir(exist_ok=True)
    for stale in sorted(episodes_dir.glob("*.npz")):
        if int(stale.stem.split("_")[0]) >= start_episode:
            stale.unlink()
    replay = EpisodeReplay.load(episodes_dir, config.train.bit_depth)
    replay.directory = episodes_dir
    if len(replay) != start_episode:
        raise TrainError(
            f"the replay in {episodes_dir} holds {len(replay)} episodes but the checkpoint "
            f"expects {start_episode}; episode files are missing"
        )

    logger = Logger(run_dir, start_episode)
    timer = Timer()
    total = config.train.episodes
    start_time = time.time() - wall_offset
    log(f"training {config.env.name} on {components.device} ({components.dtype}), "
        f"run dir {run_dir}, episodes {start_episode} -> {total}")
    bar = tqdm(
        total=total, initial=start_episode, desc="episodes", unit="ep", disable=not progress,
        dynamic_ncols=True,
    )
    last: dict[str, Any] = {}
    try:
        for episode in range(start_episode, total):
            timer.reset()
            record: dict[str, Any] = {"episode": episode}
            seed_phase = episode < config.train.seed_episodes
            # --- Alg. 1, model fitting: C updates on chunks drawn from replay ---
            history = []
            if not seed_phase and len(replay) > 0:
                model.train()
                chunks = None
                for _ in tqdm(range(config.train.collect_interval), desc="updates", leave=False,
                              disable=not progress, dynamic_ncols=True):
                    with timer("sample"):
                        chunks = replay.sample(
                            config.train.batch_size, config.train.chunk_length, replay_rng
                        )
                    if fault_hook is not None:
                        fault_hook(learner, chunks)
                    with timer("update"):
                        history.append(learner.update(chunks))
                    if learner.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                        raise TrainError(
                            f"{learner.nonfinite_in_a_row} updates in a row had a non-finite "
                            "loss or gradient; stopping. The last good checkpoint is intact; "
                            "try a lower train.learning_rate"
                        )
                model.eval()
                if (config.train.image_log_interval and chunks is not None
                        and episode % config.train.image_log_interval == 0):
                    strip = reconstruction_strip(learner, chunks)
                    if strip is not None:
                        logger.log_image("model/reconstruction", strip, env_steps)
            for key, value in mean_metrics(history).items():
                record[f"loss_{key}" if key not in ("grad_norm", "skipped") else key] = value
            record["nonfinite_updates"] = learner.nonfinite_updates
            # --- Alg. 1, data collection: one episode with the planner (or random actions) ---
            with timer("collect"):
                seed = episode_seed(config.seed, episode, 0)
                (collected,) = run_episodes(
                    [env], None if seed_phase else agent, [seed], explore=True,
                    rng=np.random.default_rng(seed),
                )
            steps = len(collected["obs"]) - 1
            env_steps += steps * env.action_repeat
            replay.add(collected)
            record.update(
                env_steps=env_steps,
                agent_steps=steps,
                **{"return": float(collected["reward"].sum())},
                random_policy=seed_phase,
            )
            # --- noise-free evaluation ---
            interval = config.train.test_interval
            if interval and not seed_phase and (episode + 1) % interval == 0:
                with timer("eval"):
                    record.update(evaluate_policy(config, agent, episode))
            for name, seconds in timer.totals.items():
                record[f"time_{name}"] = seconds
            if timer.counts.get("update"):
                record["time_per_update"] = timer.totals["update"] / timer.counts["update"]
            record["time_per_step"] = timer.totals["collect"] / max(steps, 1)
            record["wall_time"] = time.time() - start_time
            logger.log_episode(record)
            # --- checkpoint after the episode is in replay and logged ---
            done = episode + 1
            if done % config.train.checkpoint_interval == 0 or done == total:
                save_checkpoint(
                    checkpoint_path(checkpoint_dir, done),
                    {
                        "model": model.state_dict(),
                        "optimizer": learner.optimizer.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "replay_rng": replay_rng.bit_generator.state,
                        "episode": done,
                        "env_steps": env_steps,
                        "wall_time": record["wall_time"],
                        "nonfinite_updates": learner.nonfinite_updates,
                        "config": config.to_dict(),
                    },
                )
                prune_checkpoints(checkpoint_dir, keep=2)
            last = record
            bar.update(1)
            postfix = {"steps": env_steps, "return": f"{record['return']:.1f}"}
            if "loss_total" in record:
                postfix["loss"] = f"{record['loss_total']:.1f}"
            if "eval_return" in record:
                postfix["eval"] = f"{record['eval_return']:.1f}"
            bar.set_postfix(postfix)
    finally:
        bar.close()
        logger.close()
    return {"episodes": total, "env_steps": env_steps, "last": last, "run_dir": str(run_dir)}


def evaluate_policy(config: Config, agent: Agent, episode: int) -> dict[str, float]:
    """Noise-free test episodes, all envs in one batch, each env seeded differently."""
    count = config.train.test_episodes
    seeds = [episode_seed(config.seed, episode * 1000 + i, 1) for i in range(count)]
    envs = [env_from_config(config, seed) for seed in seeds]
    try:
        episodes = run_episodes(envs, agent, seeds, explore=False)
    finally:
        for env in envs:
            env.close()
    returns = [float(e["reward"].sum()) for e in episodes]
    return {"eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns))}


def load_run_config(run_dir: str | Path) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise TrainError(f"{run_dir} is not a run dir: {path.name} not found")
    try:
        return Config.load(path)
    except (json.JSONDecodeError, ValueError) as error:
        raise TrainError(f"cannot read {path}: {error}") from None


__all__ = ["train", "build", "run_episodes", "TrainError", "CheckpointError", "load_run_config"]
