"""The collect/train loop: the paper's Algorithm 1, with crash-safe checkpoints and resume.

    Alg. 1: collect S seed episodes with uniform random actions
    Alg. 1: for each further episode:
        model fitting:   C times: draw B chunks of length L from replay, one update of the ELBO
        data collection: reset; each step: filter o_t into the posterior, plan with CEM,
                         add exploration noise, act R times (action repeat), store the episode
    every `test_interval` episodes: noise-free evaluation episodes (a batch of envs)

`run_algorithm_1` is that loop, one named phase per line. Starting or resuming a run folder
(planet.resume), building the model and agent (planet.components) and running episodes
(planet.episodes) live in their own modules; the run folder's files are listed in the README.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from planet.checkpoint import (
    checkpoint_path,
    last_checkpoint_line,
    prune_checkpoints,
    save_checkpoint,
)
from planet.components import env_from_config
from planet.config import Config, validate
from planet.crash_points import collect_kill_hook, maybe_kill
from planet.data.replay import Chunks
from planet.episodes import evaluate_policy, run_episodes
from planet.errors import TrainError
from planet.learner import mean_metrics
from planet.measure import device_sync
from planet.predictions import eval_media_due, log_eval_media, reconstruction_strip
from planet.resume import OpenRun, start_or_resume
from planet.run_lock import hold_run_dir, refuse_non_directory
from planet.seeds import Stream, episode_seed, private_rng
from planet.utils import Timer, choose_device

MAX_NONFINITE_IN_A_ROW = 20

Log = Callable[[str], None]
FaultHook = Callable[[Any, Any], None]  # (learner, chunks): tests alter a batch before an update
OnEpisode = Callable[[dict[str, Any], Any], bool]  # (record, components) -> stop here


def train(
    config: Config,
    run_dir: str | Path,
    progress: bool = True,
    log: Log = print,
    fault_hook: FaultHook | None = None,
    on_episode: OnEpisode | None = None,
    lock_wait: float = 0.0,
) -> dict[str, Any]:
    """Train (or resume) a run in `run_dir`; returns a summary.

    When `run_dir` holds a checkpoint, training continues exactly where the newest usable one
    left off (see planet.resume); `config` must then agree with the saved config except in
    RESUMABLE_FIELDS. A full disk stops the run with a TrainError; the checkpoints already
    written stay readable. `fault_hook(learner, chunks)`, for tests, may alter a batch before
    an update. `on_episode(record, components)` runs after each episode; returning True stops
    training there, with a checkpoint of that episode (the learning benchmark's wall-clock
    budget).

    The run holds `run_dir`'s lock (planet.run_lock) from before its first write to its end: a
    second writer waits up to `lock_wait` seconds, then fails with RunLockedError.
    """
    run_dir = Path(run_dir)
    validate(config)  # a config changed in code after it was resolved is checked too
    refuse_non_directory(run_dir)
    # A bad --device or env fails here, before the run folder (or its lock file) is created.
    choose_device(config.device)
    env = env_from_config(config, config.seed)
    refuse_chunks_longer_than_episodes(config, env)
    log = beside_progress_bars(log)  # every message, including the planner's compile lines
    try:
        with hold_run_dir(run_dir, "planet train", wait=lock_wait):
            why = f" ({config.preset_reason})" if config.preset_reason else ""
            log(f"preset {config.preset}{why}")
            run = start_or_resume(config, run_dir, env, log)
            return run_algorithm_1(run, progress, log, fault_hook, on_episode)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise TrainError(
            f"no space left on device while writing {error.filename or run_dir}; training "
            f"stopped, {last_checkpoint_line(run_dir)}. Free some space, then run "
            f"`planet train --resume {run_dir}`"
        ) from None


def run_algorithm_1(run: OpenRun, progress: bool, log: Log, fault_hook: FaultHook | None,
                    on_episode: OnEpisode | None) -> dict[str, Any]:
    """Algorithm 1 from the run's next episode to `train.episodes`, with a checkpoint every
    `checkpoint_interval` episodes, at the end, and at a stop asked for by `on_episode`."""
    config, state, components = run.config, run.state, run.components
    total, start = config.train.episodes, state.episode
    log(f"training {config.env.name} on {components.device} ({components.dtype}), "
        f"run dir {run.run_dir}, episodes {start} -> {total}")
    if start >= total:
        log(f"nothing to do: the run already has {start} episodes (--episodes {total})")
    bars = Bars(total, start, config.train.seed_episodes, progress)
    timer, last, started = Timer(), {}, time.time() - state.wall_time
    try:
        for episode in range(start, total):
            timer.reset()
            record: dict[str, Any] = {"episode": episode}
            seed_phase = episode < config.train.seed_episodes
            strip = None
            if not seed_phase and len(run.replay) > 0:  # Alg. 1: model fitting
                fitted, strip = fit_world_model(run, episode, timer, bars, fault_hook, log)
                record.update(fitted)
            record.update(collect_episode(run, episode, seed_phase, timer, bars))
            if evaluation_due(config, episode, seed_phase):
                with timer("eval"):
                    record.update(evaluate_now(run, episode))
            record.update(timings(timer, record["agent_steps"]), wall_time=time.time() - started)
            log_episode(run, record, strip)
            maybe_kill(run.kill_at, "checkpoint", episode, 0)
            state.episode, state.wall_time = episode + 1, record["wall_time"]  # episode done
            saved = checkpoint_due(run)
            if saved:
                write_checkpoint(run)
            last = record
            bars.episode_done(record)
            if on_episode is not None and on_episode(record, components):
                if not saved:  # so that no episode is collected again on resume
                    write_checkpoint(run)
                break
    finally:
        bars.close()
        run.logger.close()
    return {
        "episodes": state.episode,
        "env_steps": state.env_steps,
        "last": last,
        "run_dir": str(run.run_dir),
        "resumed_from": start if run.resumed else None,
        "nonfinite_updates": components.learner.nonfinite_updates,
    }


def refuse_chunks_longer_than_episodes(config: Config, env) -> None:
    """A TrainError before any episode is collected when no episode of this env can hold one
    chunk (N agent steps are N + 1 rows); replay would only find out after the seed episodes."""
    rows = env.agent_steps_per_episode + 1
    fits_the_model = config.train.episodes > config.train.seed_episodes  # else no chunk is drawn
    if fits_the_model and config.train.chunk_length > rows:
        env.close()
        raise TrainError(
            f"train.chunk_length={config.train.chunk_length} is longer than any episode of "
            f"{config.env.name} can be: {rows} rows ({env.agent_steps_per_episode} agent steps "
            f"at action repeat {env.action_repeat}); lower train.chunk_length or raise "
            "env.max_episode_steps"
        )


def fit_world_model(run: OpenRun, episode: int, timer: Timer, bars: Bars,
                    fault_hook: FaultHook | None, log: Log
                    ) -> tuple[dict[str, float], np.ndarray | None]:
    """C updates, each on B chunks of L steps drawn from replay (Alg. 1, model fitting).

    Returns the mean losses (record fields) and, when one is due, the reconstruction strip."""
    config, learner = run.config, run.components.learner
    learner.model.train()
    history, chunks = [], None
    for update in bars.updates(config.train.collect_interval):
        maybe_kill(run.kill_at, "update", episode, update)
        with timer("sample"):
            chunks = run.replay.sample(
                config.train.batch_size, config.train.chunk_length, run.replay_rng
            )
        if fault_hook is not None:
            fault_hook(learner, chunks)
        with timer("update"):
            history.append(learner.update(chunks))
        run.state.updates += 1
        stop_if_diverging(run, episode)
    learner.model.eval()
    if (sync := device_sync(run.components.device)) is not None:
        # On a GPU each update's optimizer step is still queued when its update returns; the
        # next update's loss read-back waits for it. Wait for the last one here, so that it is
        # billed to the updates and not to the collection that follows.
        with timer("update", count=False):
            sync()
    skipped = sum(entry["skipped"] for entry in history)
    if skipped:
        log(f"warning: episode {episode}: skipped {skipped:.0f} of {len(history)} updates with "
            f"a non-finite loss or gradient ({learner.nonfinite_updates} in this run)")
    return loss_record(mean_metrics(history)), reconstruction_if_due(run, episode, chunks)


def stop_if_diverging(run: OpenRun, episode: int) -> None:
    """A TrainError once MAX_NONFINITE_IN_A_ROW updates in a row were skipped: the run has
    diverged, and the checkpoints before it are what is worth keeping."""
    learner = run.components.learner
    if learner.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
        raise TrainError(
            f"{learner.nonfinite_in_a_row} updates in a row had a non-finite loss or "
            f"gradient; stopping at episode {episode}: {last_checkpoint_line(run.run_dir)}. "
            "The learning rate is not a field a resume may change, so try a lower "
            "train.learning_rate (or train.grad_clip_norm) in a new --run-dir"
        )


def reconstruction_if_due(run: OpenRun, episode: int, chunks: Chunks | None
                          ) -> np.ndarray | None:
    """The reconstruction strip of the episode's last batch, every image_log_interval
    episodes; drawn on its own RNG stream, so that logging images does not change the run."""
    interval = run.config.train.image_log_interval
    if not interval or chunks is None or episode % interval:
        return None
    seed = episode_seed(run.config.seed, episode, Stream.IMAGES_RNG)
    with private_rng(run.components.device, seed):
        return reconstruction_strip(run.components.learner, chunks)


def loss_record(metrics: dict[str, float]) -> dict[str, float]:
    """The episode's mean update metrics as metrics.jsonl names them: each loss term as
    loss_<term> (loss_total, loss_kl, ...); grad_norm and skipped as they are."""
    return {key if key in ("grad_norm", "skipped") else f"loss_{key}": value
            for key, value in metrics.items()}


def collect_episode(run: OpenRun, episode: int, seed_phase: bool, timer: Timer, bars: Bars
                    ) -> dict[str, Any]:
    """One episode with the planner and exploration noise, or uniform random actions in the
    seed phase (Alg. 1, data collection); stored in replay (and on disk) before anything else."""
    env, agent = run.components.env, run.components.agent
    seed = episode_seed(run.config.seed, episode, Stream.COLLECT)
    kill_hook = collect_kill_hook(run.kill_at, episode)

    def on_step(step: int) -> None:
        bars.step(step)
        if kill_hook is not None:
            kill_hook(step)

    with timer("collect"):
        (collected,) = run_episodes([env], None if seed_phase else agent, [seed], explore=True,
                                    rng=np.random.default_rng(seed), on_step=on_step)
    steps = len(collected["obs"]) - 1
    run.state.env_steps += steps * env.action_repeat
    run.replay.add(collected)
    return {"env_steps": run.state.env_steps, "agent_steps": steps,
            "return": float(collected["reward"].sum()), "random_policy": seed_phase,
            "nonfinite_updates": run.components.learner.nonfinite_updates}


def evaluation_due(config: Config, episode: int, seed_phase: bool) -> bool:
    interval = config.train.test_interval
    return bool(interval) and not seed_phase and (episode + 1) % interval == 0


def evaluate_now(run: OpenRun, episode: int) -> dict[str, float]:
    """Noise-free episodes on their own RNG stream (test_interval may change on resume), and
    every few evaluations the eval GIF and open-loop strip in TensorBoard."""
    components, config = run.components, run.config
    evaluated: list[dict] = []
    seed = episode_seed(config.seed, episode, Stream.TRAINING_EVAL_RNG)
    with private_rng(components.device, seed):
        result = evaluate_policy(config, components.agent, episode, evaluated)
        if eval_media_due(config, episode):
            log_eval_media(run.logger, components.model, config, evaluated, run.replay,
                           run.state.env_steps)
    return result


def timings(timer: Timer, steps: int) -> dict[str, float]:
    """Seconds per phase of this episode, per update and per collected agent step."""
    record = {f"time_{name}": seconds for name, seconds in timer.totals.items()}
    if timer.counts.get("update"):
        record["time_per_update"] = timer.totals["update"] / timer.counts["update"]
    record["time_per_step"] = timer.totals["collect"] / max(steps, 1)
    return record


def log_episode(run: OpenRun, record: dict[str, Any], strip: np.ndarray | None) -> None:
    run.logger.log_episode(record)
    if strip is not None:
        run.logger.log_image("model/reconstruction", strip, record["env_steps"])


def checkpoint_due(run: OpenRun) -> bool:
    """Every `checkpoint_interval` episodes, and at the end."""
    episode, train = run.state.episode, run.config.train
    return episode % train.checkpoint_interval == 0 or episode == train.episodes


def write_checkpoint(run: OpenRun) -> None:
    """After the episode is in replay and logged; the newest two are kept."""
    state = run.state
    directory = run.run_dir / "checkpoints"
    save_checkpoint(checkpoint_path(directory, state.episode),
                    state.checkpoint(run.components, run.replay_rng))
    prune_checkpoints(directory, keep=2)


def beside_progress_bars(log):
    """log() for messages that come while tqdm bars are drawn: the bars step aside for it."""

    def write(message: str) -> None:
        with tqdm.external_write_mode():
            log(message)

    return write


class Bars:
    """The progress of a run: episodes (its ETA from trained episodes only: the random seed
    episodes are much faster), and below it the current episode's updates, then its steps."""

    def __init__(self, total: int, start: int, seed_episodes: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.seed_episodes = seed_episodes
        self.episodes = self._episodes_bar(start)
        self.inner = None

    def _episodes_bar(self, start: int):
        desc = "seed episodes" if start < self.seed_episodes else "episodes"
        return tqdm(total=self.total, initial=min(start, self.total), desc=desc, unit="ep",
                    disable=not self.enabled, dynamic_ncols=True, smoothing=0)

    def updates(self, count: int):
        return tqdm(range(count), desc="updates", leave=False, disable=not self.enabled,
                    dynamic_ncols=True)

    def step(self, step: int) -> None:
        if self.inner is None:
            self.inner = tqdm(desc="steps", unit="step", leave=False,
                              disable=not self.enabled, dynamic_ncols=True)
        self.inner.update(step - self.inner.n)

    def episode_done(self, record: dict[str, Any]) -> None:
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        done = record["episode"] + 1
        if done == self.seed_episodes:  # from here the rate (and ETA) is that of training
            self.episodes.close()
            self.episodes = self._episodes_bar(done)
        else:
            self.episodes.update(1)
        postfix = {"steps": record["env_steps"], "return": f"{record['return']:.1f}"}
        if "loss_total" in record:
            postfix["loss"] = f"{record['loss_total']:.1f}"
        if "eval_return" in record:
            postfix["eval"] = f"{record['eval_return']:.1f}"
        self.episodes.set_postfix(postfix)

    def close(self) -> None:
        for bar in (self.inner, self.episodes):
            if bar is not None:
                bar.close()
