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
    tb/                  TensorBoard events      resumes.jsonl   one line per resume (changes)

Crash safety and exact resume: see planet/resume.py.
"""

from __future__ import annotations

import errno
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
    check_fits_config,
    checkpoint_path,
    list_checkpoints,
    load_model_weights,
    prune_checkpoints,
    save_checkpoint,
)
from planet.config import Config, validate
from planet.data.preprocess import to_display
from planet.data.replay import (
    EpisodeReplay,
    atomic_write_bytes,
    episode_index,
    is_episode_file,
    remove_temporary_files,
)
from planet.envs import make_env
from planet.learner import Learner, mean_metrics
from planet.logging import Logger
from planet.models.world_model import WorldModel
from planet.resume import (
    TrainError,
    after_last_event_file,
    check_resume_config,
    collect_kill_hook,
    maybe_kill,
    private_rng,
    resume_point,
    rng_state,
    set_rng_state,
    test_kill_point,
)
from planet.run_files import check_run_folder
from planet.run_lock import hold_run_dir
from planet.utils import (
    Timer,
    autocast_factory,
    choose_device,
    resolve_precision,
    reuse_freed_host_memory,
    seed_everything,
)

MAX_NONFINITE_IN_A_ROW = 20


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


def build(config: Config, env=None, log=None) -> Components:
    """Device, precision, env, model, learner and agent; `log` hears about planner compiles."""
    device = choose_device(config.device)
    if config.train.reuse_host_memory and device.type == "cpu":
        reuse_freed_host_memory()
    dtype = resolve_precision(config.train.precision, device)
    autocast = autocast_factory(device, dtype)
    env = env or env_from_config(config, config.seed)
    action_size = int(np.prod(env.action_space.shape))
    model = WorldModel(config.model, action_size, env.observation_space.shape).to(device)
    learner = Learner(model, config.train, device, autocast)
    agent = Agent(model, config, device, autocast, log)
    return Components(config, device, dtype, autocast, env, model, learner, agent)


def beside_progress_bars(log):
    """log() for messages that come while tqdm bars are drawn: the bars step aside for it."""

    def write(message: str) -> None:
        with tqdm.external_write_mode():
            log(message)

    return write


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
    on_episode=None,
    lock_wait: float = 0.0,
) -> dict[str, Any]:
    """Train (or resume) a run in `run_dir`; returns a summary.

    When `run_dir` holds a checkpoint, training continues exactly where the newest usable one
    left off (see planet.resume); `config` must then agree with the saved config except in
    RESUMABLE_FIELDS. A full disk stops the run with a TrainError; the checkpoints already
    written stay readable. `fault_hook(learner, chunks)`, for tests, may alter a batch before
    an update. `on_episode(record, components)` runs after each checkpointed episode; returning
    True stops training there (the learning benchmark's wall-clock budget).

    The run holds `run_dir`'s lock (planet.run_lock) from before its first write to its end: a
    second writer waits up to `lock_wait` seconds, then fails with RunLockedError.
    """
    run_dir = Path(run_dir)
    validate(config)  # a config changed in code after it was resolved is checked too
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"run dir {run_dir} exists and is not a directory")
    # A bad --device or env fails here, before the run folder (or its lock file) is created.
    choose_device(config.device)
    env = env_from_config(config, config.seed)
    try:
        with hold_run_dir(run_dir, "planet train", wait=lock_wait):
            return _train(config, run_dir, env, progress, log, fault_hook, on_episode)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        kept = list_checkpoints(run_dir / "checkpoints")
        last_good = f"the last good checkpoint is {kept[0]}" if kept else "no checkpoint yet"
        raise TrainError(
            f"no space left on device while writing {error.filename or run_dir}; training "
            f"stopped, {last_good}. Free some space, then run `planet train --resume {run_dir}`"
        ) from None


def _train(
    config: Config, run_dir: Path, env, progress: bool, log, fault_hook, on_episode=None
) -> dict[str, Any]:
    log = beside_progress_bars(log)  # every message, including the planner's compile lines
    why = f" ({config.preset_reason})" if config.preset_reason else ""
    log(f"preset {config.preset}{why}")
    checkpoint_dir = run_dir / "checkpoints"
    episodes_dir = run_dir / "episodes"
    config_path = run_dir / "config.json"
    check_run_folder(run_dir, log)  # never overwrites a config.json planet did not write
    resuming = config_path.exists() and bool(list_checkpoints(checkpoint_dir))
    if not config_path.exists() and list_checkpoints(checkpoint_dir):
        raise TrainError(f"{run_dir} holds checkpoints but no config.json, so it cannot be "
                         "resumed safely; restore config.json or use a new --run-dir")
    changes = check_resume_config(load_run_config(run_dir), config) if resuming else []
    for directory in (checkpoint_dir, episodes_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for directory in (run_dir, checkpoint_dir, episodes_dir):
        remove_temporary_files(directory)  # left by a kill in the middle of a write

    # --- resume or start ---
    found = resume_point(run_dir, config, log) if resuming else None
    if found is not None:  # config.json edited to another model: one line, before building
        check_fits_config(config, found[1], found[0], config_path)
    seed_everything(config.seed, config.train.deterministic)
    components = build(config, env, log=log)
    model, learner, agent = components.model, components.learner, components.agent
    replay_rng = np.random.default_rng(config.seed)
    start_episode, env_steps, updates, wall_offset = 0, 0, 0, 0.0
    if found is None:
        replay = EpisodeReplay(
            None, config.train.bit_depth, config.train.max_episodes_in_memory
        )
    else:
        path, payload, replay = found
        load_model_weights(model, payload, path, config_path)
        learner.optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"], replay_rng)
        start_episode = int(payload["episode"])
        env_steps = int(payload["env_steps"])
        updates = int(payload["updates"])
        wall_offset = float(payload["wall_time"])
        learner.nonfinite_updates = int(payload["nonfinite_updates"])
        learner.nonfinite_in_a_row = int(payload["nonfinite_in_a_row"])
        age = time.time() - path.stat().st_mtime
        log(f"resuming from {path.name}: {start_episode} episodes, {env_steps} env steps, "
            f"saved {age:.0f} s ago")
        for change in changes:
            log(f"resume: allowed change {change}")
        with open(run_dir / "resumes.jsonl", "a") as handle:  # a record of every resume
            handle.write(json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "checkpoint": path.name,
                "episode": start_episode, "env_steps": env_steps, "changes": changes,
            }) + "\n")
    # Episode files past the resume point were collected after it (their checkpoint was never
    # written or was unusable): drop them; those episodes are collected again.
    for stale in sorted(episodes_dir.glob("*.npz")):
        if is_episode_file(stale) and episode_index(stale) >= start_episode:
            stale.unlink()
    replay.directory = episodes_dir  # from here on, each new episode is written as it completes
    atomic_write_bytes(config_path, (config.to_json() + "\n").encode())

    # Events a killed run logged past the resume point are purged (steps are env steps).
    purge_step = env_steps + 1 if (run_dir / "tb").exists() else None
    if purge_step is not None:
        after_last_event_file(run_dir / "tb")
    logger = Logger(run_dir, start_episode, purge_step=purge_step, warn=log,
                    rebuild=metrics_rebuilder(replay, env.action_repeat, config))
    timer = Timer()
    total = config.train.episodes
    start_time = time.time() - wall_offset
    kill_at = test_kill_point()
    log(f"training {config.env.name} on {components.device} ({components.dtype}), "
        f"run dir {run_dir}, episodes {start_episode} -> {total}")
    if start_episode >= total:
        log(f"nothing to do: the run already has {start_episode} episodes (--episodes {total})")
    bar = tqdm(
        total=total, initial=min(start_episode, total), desc="episodes", unit="ep",
        disable=not progress, dynamic_ncols=True,
    )
    last: dict[str, Any] = {}
    completed = start_episode
    try:
        for episode in range(start_episode, total):
            timer.reset()
            record: dict[str, Any] = {"episode": episode}
            seed_phase = episode < config.train.seed_episodes
            # --- Alg. 1, model fitting: C updates on chunks drawn from replay ---
            history = []
            strip = None
            if not seed_phase and len(replay) > 0:
                model.train()
                chunks = None
                for update in tqdm(range(config.train.collect_interval), desc="updates",
                                   leave=False, disable=not progress, dynamic_ncols=True):
                    maybe_kill(kill_at, "update", episode, update)
                    with timer("sample"):
                        chunks = replay.sample(
                            config.train.batch_size, config.train.chunk_length, replay_rng
                        )
                    if fault_hook is not None:
                        fault_hook(learner, chunks)
                    with timer("update"):
                        history.append(learner.update(chunks))
                    updates += 1
                    if learner.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                        raise TrainError(
                            f"{learner.nonfinite_in_a_row} updates in a row had a non-finite "
                            f"loss or gradient; stopping at episode {episode}. The last good "
                            f"checkpoint (after {episode} episodes) is intact in "
                            f"{checkpoint_dir}; try a lower train.learning_rate"
                        )
                model.eval()
                skipped = sum(entry["skipped"] for entry in history)
                if skipped:
                    log(f"warning: episode {episode}: skipped {skipped:.0f} of {len(history)} "
                        f"updates with a non-finite loss or gradient "
                        f"({learner.nonfinite_updates} in this run)")
                if (config.train.image_log_interval and chunks is not None
                        and episode % config.train.image_log_interval == 0):
                    # Its own RNG stream, so logging images does not change the run.
                    with private_rng(components.device, episode_seed(config.seed, episode, 11)):
                        strip = reconstruction_strip(learner, chunks)
            for key, value in mean_metrics(history).items():
                record[f"loss_{key}" if key not in ("grad_norm", "skipped") else key] = value
            record["nonfinite_updates"] = learner.nonfinite_updates
            # --- Alg. 1, data collection: one episode with the planner (or random actions) ---
            with timer("collect"):
                seed = episode_seed(config.seed, episode, 0)
                (collected,) = run_episodes(
                    [env], None if seed_phase else agent, [seed], explore=True,
                    rng=np.random.default_rng(seed),
                    on_frame=collect_kill_hook(kill_at, episode),
                )
            steps = len(collected["obs"]) - 1
            env_steps += steps * env.action_repeat
            replay.add(collected)  # written to episodes/ (atomically) before anything else
            record.update(
                env_steps=env_steps,
                agent_steps=steps,
                **{"return": float(collected["reward"].sum())},
                random_policy=seed_phase,
            )
            # --- noise-free evaluation (own RNG stream: test_interval may change on resume) ---
            interval = config.train.test_interval
            if interval and not seed_phase and (episode + 1) % interval == 0:
                evaluated: list[dict] = []
                with timer("eval"), private_rng(
                    components.device, episode_seed(config.seed, episode, 10)
                ):
                    record.update(evaluate_policy(config, agent, episode, evaluated))
                    from planet.runs import eval_media_due, log_eval_media

                    if eval_media_due(config, episode):  # TensorBoard: eval GIF, open loop
                        log_eval_media(logger, model, config, evaluated, replay, env_steps)
            for name, seconds in timer.totals.items():
                record[f"time_{name}"] = seconds
            if timer.counts.get("update"):
                record["time_per_update"] = timer.totals["update"] / timer.counts["update"]
            record["time_per_step"] = timer.totals["collect"] / max(steps, 1)
            record["wall_time"] = time.time() - start_time
            logger.log_episode(record)
            if strip is not None:
                logger.log_image("model/reconstruction", strip, env_steps)
            maybe_kill(kill_at, "checkpoint", episode, 0)
            # --- checkpoint after the episode is in replay and logged ---
            done = episode + 1
            if done % config.train.checkpoint_interval == 0 or done == total:
                save_checkpoint(
                    checkpoint_path(checkpoint_dir, done),
                    {
                        "model": model.state_dict(),
                        "optimizer": learner.optimizer.state_dict(),
                        "rng": rng_state(replay_rng),
                        "episode": done,
                        "env_steps": env_steps,
                        "updates": updates,
                        "wall_time": record["wall_time"],
                        "nonfinite_updates": learner.nonfinite_updates,
                        "nonfinite_in_a_row": learner.nonfinite_in_a_row,
                        "config": config.to_dict(),
                    },
                )
                prune_checkpoints(checkpoint_dir, keep=2)
            last, completed = record, done
            bar.update(1)
            postfix = {"steps": env_steps, "return": f"{record['return']:.1f}"}
            if "loss_total" in record:
                postfix["loss"] = f"{record['loss_total']:.1f}"
            if "eval_return" in record:
                postfix["eval"] = f"{record['eval_return']:.1f}"
            bar.set_postfix(postfix)
            if on_episode is not None and on_episode(record, components):
                break
    finally:
        bar.close()
        logger.close()
    return {
        "episodes": completed,
        "env_steps": env_steps,
        "last": last,
        "run_dir": str(run_dir),
        "resumed_from": start_episode if found is not None else None,
        "nonfinite_updates": learner.nonfinite_updates,
    }


def metrics_rebuilder(replay: EpisodeReplay, action_repeat: int, config: Config):
    """rebuild(episode) -> the metrics line of a stored episode, from its episode file: episode,
    env and agent steps, return, random_policy, and `rebuilt: true` (losses, evaluation and
    timings are stored nowhere else)."""

    def rebuild(episode: int) -> dict[str, Any]:
        steps = replay.lengths[: episode + 1]
        return {
            "episode": episode,
            "env_steps": int(sum(steps)) * action_repeat,
            "agent_steps": int(steps[-1]),
            "return": float(replay._episode(episode)["reward"].sum()),
            "random_policy": episode < config.train.seed_episodes,
            "rebuilt": True,
        }

    return rebuild


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
    """Noise-free test episodes, all envs in one batch, each env seeded differently.

    The episodes themselves are appended to `keep` when given (for videos)."""
    count = config.train.test_episodes
    seeds = [episode_seed(config.seed, episode * 1000 + i, 1) for i in range(count)]
    episodes = run_test_episodes(config, agent, seeds)
    if keep is not None:
        keep.extend(episodes)
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
