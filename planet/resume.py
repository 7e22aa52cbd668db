"""Crash safety and exact resume of a training run (used by planet.train).

Each episode is written to episodes/ as it completes, then logged, then
`checkpoints/episode_<N>.pt` is written (every `checkpoint_interval` episodes; default 1): model,
optimiser, every RNG (torch, numpy, Python, the replay sampler's; the GPUs' for a run on CUDA), the
episode, env-step and update counters. Every write is atomic (temporary file, fsync, rename). A
kill at any moment therefore leaves the last checkpoint N and episode files 0..N-1 intact, plus
perhaps episode files, metrics lines and TensorBoard events past N. Resuming loads checkpoint N,
deletes episode files >= N, drops metrics lines >= N (an unreadable line of an earlier episode is
reported and rebuilt from its episode file), purges TensorBoard events past N's env steps, and
continues: with machine.deterministic on CPU the resumed run logs the same numbers as a run that
was never killed. A half-collected episode was never written and is collected again; so are the
episodes after the last checkpoint when checkpoint_interval > 1 (their model state was not saved).
Env RNG needs no saving: each episode resets its env with `episode_seed`. The whole run holds the
run folder's lock (planet.run_lock), so no second writer can interleave its episodes or delete the
temporary files of this one.

This module holds what that takes: which config fields may change on resume, the choice of the
checkpoint to resume from, the counters a checkpoint saves beside the model, the optimiser and
the RNG states (TrainingState; the states themselves: planet.seeds.rng_state), starting or
resuming a run folder (start_or_resume), and the TensorBoard purge helper. The crash tests' kill
points are in planet.crash_points.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planet.atomic_files import atomic_write_bytes, remove_temporary_files
from planet.checkpoint import (
    CheckpointError,
    check_fits_config,
    list_checkpoints,
    load_checkpoint,
    load_model_weights,
    set_aside,
)
from planet.config import Config, MachineConfig, flatten
from planet.crash_points import KillPoint, kill_point_from_env
from planet.data.replay import EpisodeReplay, ReplayError, episode_index, list_episode_files
from planet.errors import TrainError
from planet.seeds import rng_state, set_rng_state

# Fields that may differ between a run and its resume: they change neither the model nor the
# data already collected (every machine switch is one). Any other difference is refused.
RESUMABLE_FIELDS = {
    "train.episodes",
    "train.test_interval",
    "train.test_episodes",
    "train.checkpoint_interval",
    "train.image_log_interval",
    "train.max_episodes_in_memory",
    *(f"machine.{field.name}" for field in dataclasses.fields(MachineConfig)),
    "device",
    "preset",
    "preset_reason",
}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    """Fields that differ between two flattened configs, each as 'key: old -> new', in key
    order; a field missing from one side counts as None there."""
    return {key: f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}


def check_resume_config(saved: Config, requested: Config, saved_in: str = "config.json"
                        ) -> list[str]:
    """Differences between a saved and a requested config; raises on any unsafe one.
    `saved_in` names where the saved config comes from, for the error."""
    changes = config_changes(flatten(saved.to_dict()), flatten(requested.to_dict()))
    unsafe = [text for key, text in changes.items() if key not in RESUMABLE_FIELDS]
    if unsafe:
        raise TrainError(
            f"cannot resume: the config differs from the one in {saved_in} in fields that "
            f"change the model or the data ({'; '.join(unsafe)}). Use a new --run-dir, or "
            "resume with the saved values."
        )
    return list(changes.values())


def checkpoint_config(payload: dict[str, Any]) -> Config | None:
    """The config a checkpoint was saved under (None for a checkpoint without a readable one:
    load_model_weights still checks the weights' shapes)."""
    try:
        return Config.from_dict(payload["config"])
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def resume_point(run_dir: Path, config: Config, log=print):
    """The newest checkpoint that loads and whose episodes all load: (path, payload, replay).

    Fallback: a checkpoint that fails its checksum, or whose replay holds a damaged or missing
    episode file, is skipped for the next older one, and set aside as `*.damaged` so that a
    later resume cannot pick it up once new episodes are written (one that lacks a counter a
    resume needs is skipped the same way). A checkpoint that cannot be read at all (permissions,
    an I/O error) is not damage: TrainError, and nothing is set aside. Raises TrainError naming
    every problem when no checkpoint can be used.
    """
    checkpoint_dir, episodes_dir = run_dir / "checkpoints", run_dir / "episodes"
    problems: list[str] = []
    skipped: list[Path] = []
    for path in list_checkpoints(checkpoint_dir):
        try:
            payload = load_checkpoint(path)
            missing = [key for key in RESUME_KEYS if key not in payload]
            if missing:
                raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)} (written by "
                                      "an older planet), so it cannot be resumed")
            episodes = int(payload["episode"])
            replay = EpisodeReplay.load(
                episodes_dir, config.train.bit_depth, config.train.max_episodes_in_memory,
                limit=episodes,
            )
            if len(replay) != episodes:
                raise ReplayError(
                    f"{episodes_dir} holds {len(replay)} episode files but checkpoint {path} "
                    f"needs {episodes}; episode files are missing"
                )
        except (CheckpointError, ReplayError) as error:
            if isinstance(error, CheckpointError) and not error.damaged:
                # Falling back would drop the episodes this checkpoint covers.
                raise TrainError(f"{error}; no checkpoint or episode file was set aside or "
                                 "deleted. Fix that, then resume again") from None
            log(f"warning: {error}; trying an older checkpoint")
            problems.append(error.reason)
            skipped.append(path)
            continue
        for bad in skipped:
            log(f"warning: setting aside unusable checkpoint {bad.name} as "
                f"{set_aside(bad).name}")
        return path, payload, replay
    listed = "; ".join(dict.fromkeys(problems)) or f"none in {checkpoint_dir}"  # each once
    raise TrainError(f"cannot resume {run_dir}: no usable checkpoint ({listed}). "
                     "Start a new --run-dir")


def after_last_event_file(tensorboard_dir: Path) -> None:
    """Make sure a new TensorBoard event file sorts after the existing ones.

    TensorBoard reads event files in name order, and a name starts with its creation second,
    then the pid: a writer opened within the same second as the killed run's (by a lower pid)
    would be read first, and the killed run's events past the resume point would then win over
    the purge. In that rare case wait for the next second (under 1 s).
    """
    seconds = []
    for path in tensorboard_dir.glob("events.out.tfevents.*"):
        stamp = path.name.split(".")[3]
        if stamp.isdigit():
            seconds.append(int(stamp))
    if seconds and time.time() < max(seconds) + 1:
        time.sleep(max(seconds) + 1 - time.time())


# --- the state a checkpoint saves, and a run started or resumed from it ----------------------

# What a resume reads from a checkpoint (TrainingState.checkpoint writes these and "config").
RESUME_KEYS = ("model", "optimizer", "rng", "episode", "env_steps", "updates", "wall_time",
               "nonfinite_updates", "nonfinite_in_a_row")


@dataclass
class TrainingState:
    """The counters a checkpoint saves beside the model, the optimiser and every RNG."""

    episode: int = 0  # episodes collected so far: the next one to collect
    env_steps: int = 0  # action repeats included
    updates: int = 0
    wall_time: float = 0.0  # seconds of training, summed over every process of the run

    def checkpoint(self, components, replay_rng: np.random.Generator) -> dict[str, Any]:
        """Everything to continue from here: the payload of checkpoints/episode_<N>.pt."""
        learner = components.learner
        return {
            "model": components.model.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
            "rng": rng_state(replay_rng, components.device),
            "episode": self.episode,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_time": self.wall_time,
            "nonfinite_updates": learner.nonfinite_updates,
            "nonfinite_in_a_row": learner.nonfinite_in_a_row,
            "config": components.config.to_dict(),
        }

    @classmethod
    def restore(cls, payload: dict[str, Any], components, replay_rng: np.random.Generator,
                path: Path, config_path: Path) -> TrainingState:
        """Load a checkpoint's payload into the components; returns its counters."""
        load_model_weights(components.model, payload, path, config_path)
        components.learner.optimizer.load_state_dict(payload["optimizer"])
        components.learner.nonfinite_updates = int(payload["nonfinite_updates"])
        components.learner.nonfinite_in_a_row = int(payload["nonfinite_in_a_row"])
        set_rng_state(payload["rng"], replay_rng, components.device)
        return cls(int(payload["episode"]), int(payload["env_steps"]), int(payload["updates"]),
                   float(payload["wall_time"]))


@dataclass
class OpenRun:
    """A run folder ready for the loop: components, replay, counters and logger."""

    config: Config
    run_dir: Path
    components: Any  # planet.components.Components
    replay: EpisodeReplay
    replay_rng: np.random.Generator
    state: TrainingState
    logger: Any  # planet.logging.Logger
    resumed: bool
    # Where a crash test asks the process to kill itself (None outside tests).
    kill_at: KillPoint | None = dataclasses.field(default_factory=kill_point_from_env)


def start_or_resume(config: Config, run_dir: Path, env, log) -> OpenRun:
    """Prepare `run_dir` (it must be locked): a new run, or the newest usable checkpoint loaded
    with its replay, the episodes and events logged past it dropped, and a line in resumes.jsonl.
    """
    from planet.components import build
    from planet.logging import Logger
    from planet.utils import seed_everything

    found, changes = check_folder_and_find_checkpoint(config, run_dir, log)
    seed_everything(config.seed, config.machine.deterministic)
    components = build(config, env, log=log)
    replay_rng = np.random.default_rng(config.seed)
    if found is None:
        state = TrainingState()
        # Each episode is written to episodes/ as it completes (a resumed replay does the same).
        replay = EpisodeReplay(run_dir / "episodes", config.train.bit_depth,
                               config.train.max_episodes_in_memory)
    else:
        checkpoint_path, payload, replay = found
        state = TrainingState.restore(payload, components, replay_rng, checkpoint_path,
                                      run_dir / "config.json")
        age = time.time() - checkpoint_path.stat().st_mtime
        log(f"resuming from {checkpoint_path.name}: {state.episode} episodes, "
            f"{state.env_steps} env steps, saved {age:.0f} s ago")
        for change in changes:
            log(f"resume: allowed change {change}")
        append_resume_record(run_dir, checkpoint_path, state, changes)
    # Episode files past the resume point were collected after it (their checkpoint was never
    # written or was unusable): drop them; those episodes are collected again.
    drop_episode_files_from(run_dir / "episodes", state.episode)
    atomic_write_bytes(run_dir / "config.json", (config.to_json() + "\n").encode())
    # Events a killed run logged past the resume point are purged (steps are env steps).
    purge_step = state.env_steps + 1 if (run_dir / "tb").exists() else None
    if purge_step is not None:
        after_last_event_file(run_dir / "tb")
    logger = Logger(run_dir, state.episode, purge_step=purge_step, warn=log,
                    rebuild=metrics_rebuilder(replay, components.env.action_repeat, config))
    return OpenRun(config, run_dir, components, replay, replay_rng, state, logger,
                   resumed=found is not None)


def check_folder_and_find_checkpoint(config: Config, run_dir: Path, log):
    """Before anything is built: refuse a folder or config that cannot be run or resumed, clear
    the temporary files of a killed write, and find the checkpoint to resume from. Returns
    ((path, payload, replay) or None for a new run, the allowed config changes)."""
    from planet.run_files import check_run_folder, load_run_config

    checkpoint_dir, episodes_dir = run_dir / "checkpoints", run_dir / "episodes"
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
    found = resume_point(run_dir, config, log) if resuming else None
    if found is not None:
        checkpoint_path, payload, _ = found
        # config.json may have been edited since the checkpoint was written: a checkpoint
        # that does not fit the model is refused in one line before the model is built, and
        # any other change that is not resumable is refused too.
        check_fits_config(config, payload, checkpoint_path, config_path)
        if (saved := checkpoint_config(payload)) is not None:
            changes = check_resume_config(saved, config, saved_in=str(checkpoint_path))
    return found, changes


def append_resume_record(run_dir: Path, checkpoint_path: Path, state: TrainingState,
                         changes: list[str]) -> None:
    """One line in RUN_DIR/resumes.jsonl per resume: when, from which checkpoint, where it
    stood, and the config changes allowed."""
    with open(run_dir / "resumes.jsonl", "a") as handle:
        handle.write(json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "checkpoint": checkpoint_path.name,
            "episode": state.episode, "env_steps": state.env_steps, "changes": changes,
        }) + "\n")


def drop_episode_files_from(episodes_dir: Path, first_index: int) -> None:
    """Delete the episode files numbered `first_index` and above."""
    for stale in list_episode_files(episodes_dir):
        if episode_index(stale) >= first_index:
            stale.unlink()


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
            "return": float(replay.episode(episode)["reward"].sum()),
            "random_policy": episode < config.train.seed_episodes,
            "rebuilt": True,
        }

    return rebuild
