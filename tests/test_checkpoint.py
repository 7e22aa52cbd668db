"""Checkpoint and episode files (atomic writes, checks on load, fallback) and training guards
(non-finite updates, a full disk). Resume itself is tested in test_resume.py."""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os

import numpy as np
import pytest
import torch
from conftest import quiet

import planet.train
from planet.atomic_files import is_temporary_file
from planet.checkpoint import (
    MAGIC,
    CheckpointError,
    checkpoint_episode,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from planet.components import build
from planet.config import make_config
from planet.data.replay import Chunks, EpisodeReplay, ReplayError, load_episode
from planet.errors import TrainError
from planet.logging import read_metrics
from planet.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def no_temporary_files(directory) -> bool:
    return not [path for path in directory.rglob("*") if is_temporary_file(path)]


# --- checkpoint files ----------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "episode_000001.pt"
    payload = {"weights": torch.arange(6.0).reshape(2, 3), "episode": 1, "rng": {"a": [1, 2]}}
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], payload["weights"])
    assert loaded["episode"] == 1 and loaded["rng"] == {"a": [1, 2]}
    assert no_temporary_files(tmp_path)


def test_damaged_checkpoints_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "episode_000001.pt"
    save_checkpoint(path, {"weights": torch.zeros(1000)})
    data = path.read_bytes()

    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert f"checkpoint {path} fails its sha256 checksum (truncated or corrupted)" in message
    assert "falls back to the previous checkpoint" in message

    path.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="is not a planet checkpoint or is truncated"):
        load_checkpoint(path)

    flipped = bytearray(data)
    flipped[-10] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="fails its sha256 checksum"):
        load_checkpoint(path)

    garbage = b"not a torch file"
    path.write_bytes(MAGIC + hashlib.sha256(garbage).digest() + garbage)
    with pytest.raises(CheckpointError, match="passes its checksum but cannot be loaded"):
        load_checkpoint(path)

    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_latest_falls_back_to_the_previous_checkpoint(tmp_path):
    for episode in (1, 2):
        save_checkpoint(tmp_path / f"episode_00000{episode}.pt", {"episode": episode})
    newest = tmp_path / "episode_000002.pt"
    newest.write_bytes(newest.read_bytes()[:-5])
    warnings: list[str] = []
    path, payload = load_latest(tmp_path, warn=warnings.append)
    assert path.name == "episode_000001.pt" and payload["episode"] == 1
    assert len(warnings) == 1 and str(newest) in warnings[0]


def test_checkpoints_are_listed_by_the_episode_in_their_name(tmp_path):
    for episode in (9, 999_999, 1_234_567):  # as text, the 7-digit name sorts before 999999
        save_checkpoint(tmp_path / f"episode_{episode:06d}.pt", {"episode": episode})
    save_checkpoint(tmp_path / "episode_best.pt", {"episode": -1})  # a user's file
    assert [checkpoint_episode(p) for p in list_checkpoints(tmp_path)] == [1_234_567, 999_999, 9]
    with pytest.raises(CheckpointError, match="not a checkpoint planet named"):
        checkpoint_episode(tmp_path / "episode_best.pt")


def fail_fsync_after(monkeypatch, calls: int):
    """Make the `calls`+1-th os.fsync from now on fail as on a full disk."""
    real_fsync = os.fsync
    state = {"left": calls}

    def fsync(fd):
        if state["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        state["left"] -= 1
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return state


def fail_fsync_of(monkeypatch, name_start: str) -> None:
    """Make os.fsync fail as on a full disk for files whose name starts with `name_start` (the
    atomic writer's temporary file of a checkpoint, say); every other fsync goes through."""
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(name_start):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "episode_000001.pt"
    save_checkpoint(path, {"version": 1})
    fail_fsync_after(monkeypatch, 0)
    with pytest.raises(OSError) as error:
        save_checkpoint(path, {"version": 2})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"version": 1}
    assert no_temporary_files(tmp_path)


# --- episode files ------------------------------------------------------------------------------
def random_episode(rng: np.random.Generator, steps: int = 12) -> dict[str, np.ndarray]:
    return {
        "obs": rng.integers(0, 256, size=(steps + 1, 3, 64, 64), dtype=np.uint8),
        "action": rng.uniform(-1, 1, size=(steps + 1, 2)).astype(np.float32),
        "reward": rng.normal(size=steps + 1).astype(np.float32),
    }


def test_episode_files_are_written_as_each_episode_completes(tmp_path):
    replay = EpisodeReplay(tmp_path, bit_depth=5)
    episode = random_episode(np.random.default_rng(0))
    replay.add(episode)
    (path,) = tmp_path.glob("*.npz")
    assert path.name == "000000_12.npz"
    stored = load_episode(path)
    assert stored["obs"].dtype == np.uint8
    assert np.array_equal(stored["obs"], (episode["obs"] >> 3) << 3)  # 5 bits kept
    assert np.array_equal(stored["action"], episode["action"])
    assert path.stat().st_size < stored["obs"].nbytes  # compressed
    assert no_temporary_files(tmp_path)


def test_damaged_episode_files_name_the_file(tmp_path):
    replay = EpisodeReplay(tmp_path)
    replay.add(random_episode(np.random.default_rng(0)))
    (path,) = tmp_path.glob("*.npz")
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 3])
    with pytest.raises(ReplayError) as error:
        load_episode(path)
    assert f"episode file {path} is unreadable, truncated or corrupted" in str(error.value)
    assert "falls back to a checkpoint taken before this episode" in str(error.value)

    episode = load_episode_unchecked(good)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, checksum=np.array(12345, np.uint32), **episode)
    path.write_bytes(buffer.getvalue())  # a valid zip whose contents do not match their CRC
    with pytest.raises(ReplayError, match=f"episode file {path} fails its CRC32 checksum"):
        load_episode(path)


def load_episode_unchecked(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as npz:
        return {key: npz[key] for key in ("obs", "action", "reward")}


def test_memory_cap_keeps_newest_in_ram_and_reads_older_from_disk(tmp_path):
    rng = np.random.default_rng(1)
    episodes = [random_episode(rng, steps=8 + i) for i in range(5)]
    capped = EpisodeReplay(tmp_path, max_episodes_in_memory=2)
    uncapped = EpisodeReplay()
    for episode in episodes:
        capped.add(episode)
        uncapped.add(episode)
    assert len(capped) == 5 and capped.resident == 2
    assert capped.episodes[:3] == [None, None, None]  # the oldest left RAM, not the replay
    assert capped.num_steps == uncapped.num_steps
    # Sampling is unchanged: evicted episodes are read back from their files.
    first = capped.sample(16, 6, np.random.default_rng(7))
    second = uncapped.sample(16, 6, np.random.default_rng(7))
    for name in ("obs", "action", "reward"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert capped.resident == 2
    reloaded = EpisodeReplay.load(tmp_path, max_episodes_in_memory=2)
    assert len(reloaded) == 5 and reloaded.resident == 2
    third = reloaded.sample(16, 6, np.random.default_rng(7))
    assert np.array_equal(third.obs, first.obs)
    with pytest.raises(ReplayError, match="max_episodes_in_memory must be >= 0"):
        EpisodeReplay(tmp_path, max_episodes_in_memory=-1)


# --- training guards ----------------------------------------------------------------------------
def guard_config(**overrides):
    """toy:dot, smoke sizes: episode 0 random, then C updates before each planner episode."""
    values = {
        "env.name": "toy:dot", "env.max_episode_steps": 20, "train.episodes": 2,
        "train.seed_episodes": 1, "train.collect_interval": 4, "train.test_interval": 0,
        "train.image_log_interval": 0, "machine.precision": "float32",
    }
    values.update(overrides)
    return make_config("smoke", values)


def test_learner_skips_a_nonfinite_update(tmp_path):
    components = build(guard_config())
    learner = components.learner
    replay = EpisodeReplay()
    replay.add(random_episode(np.random.default_rng(0), steps=20))
    chunks = replay.sample(4, 10, np.random.default_rng(0))
    assert learner.update(chunks)["skipped"] == 0.0  # a good step first: Adam state exists
    weights = {k: v.clone() for k, v in learner.model.state_dict().items()}
    steps = [state["step"].clone() for state in learner.optimizer.state.values()]
    bad = Chunks(chunks.obs, chunks.action, np.full_like(chunks.reward, np.nan))
    metrics = learner.update(bad)
    assert metrics["skipped"] == 1.0 and math.isnan(metrics["total"])
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert [state["step"] for state in learner.optimizer.state.values()] == steps
    assert (learner.nonfinite_updates, learner.nonfinite_in_a_row) == (1, 1)
    assert learner.update(chunks)["skipped"] == 0.0
    assert (learner.nonfinite_updates, learner.nonfinite_in_a_row) == (1, 0)


def test_nonfinite_losses_are_skipped_counted_and_logged(tmp_path, monkeypatch):
    calls = {"n": 0}

    def poison_every_other(learner, chunks):
        if calls["n"] % 2 == 0:
            chunks.reward[:] = np.nan
        calls["n"] += 1

    # Also check the memory cap is wired from the config to the replay the loop samples.
    resident = []
    sample = EpisodeReplay.sample
    monkeypatch.setattr(EpisodeReplay, "sample",
                        lambda self, *a: resident.append(self.resident) or sample(self, *a))
    lines: list[str] = []
    config = guard_config(**{"train.max_episodes_in_memory": 1})
    summary = train(config, tmp_path / "run", progress=False, log=lines.append,
                    fault_hook=poison_every_other)
    assert summary["nonfinite_updates"] == 2
    assert resident and max(resident) <= 1
    last = read_metrics(tmp_path / "run")[-1]
    assert last["nonfinite_updates"] == 2 and last["skipped"] == 0.5
    assert math.isfinite(last["loss_total"])  # the mean over the updates that were applied
    assert any("skipped 2 of 4 updates with a non-finite loss" in line for line in lines)
    payload = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[0])
    assert payload["nonfinite_updates"] == 2
    assert all(torch.isfinite(value).all() for value in payload["model"].values())


def test_too_many_nonfinite_updates_stop_with_the_last_checkpoint_intact(tmp_path, monkeypatch):
    monkeypatch.setattr(planet.train, "MAX_NONFINITE_IN_A_ROW", 6)

    def poison(learner, chunks):
        chunks.reward[:] = np.inf

    run_dir = tmp_path / "run"
    with pytest.raises(TrainError) as error:
        train(guard_config(**{"train.episodes": 3}), run_dir, progress=False, log=quiet,
              fault_hook=poison)
    message = str(error.value)
    assert "6 updates in a row had a non-finite loss or gradient; stopping at episode 2" in message
    assert "the last checkpoint is " in message and "episode_000002.pt. The learning" in message
    assert "in a new --run-dir" in message
    payload = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[0])
    assert payload["episode"] == 2 and payload["nonfinite_updates"] == 4
    assert [m["episode"] for m in read_metrics(run_dir)] == [0, 1]


def test_full_disk_stops_cleanly_and_the_run_resumes(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    state: dict = {}

    def fill_disk_during_episode_1(learner, chunks):
        if not state:  # the first update of episode 1; episode 0 and checkpoint 1 are written
            # Episode file 1 and its metrics line still reach the disk; checkpoint 2 does not.
            fail_fsync_of(monkeypatch, ".episode_000002.pt.planet-tmp.")
            state["full"] = True

    with pytest.raises(TrainError) as error:
        train(guard_config(), run_dir, progress=False, log=quiet,
              fault_hook=fill_disk_during_episode_1)
    message = str(error.value)
    checkpoints = run_dir / "checkpoints"
    assert f"no space left on device while writing {checkpoints / 'episode_000002.pt'}" in message
    assert f"the last checkpoint is {checkpoints / 'episode_000001.pt'}" in message
    assert f"planet train --resume {run_dir}" in message
    assert no_temporary_files(run_dir)
    assert load_checkpoint(checkpoints / "episode_000001.pt")["episode"] == 1
    assert len(list((run_dir / "episodes").glob("*.npz"))) == 2  # episode 1 is past checkpoint 1

    monkeypatch.undo()  # space freed
    summary = train(guard_config(), run_dir, progress=False, log=quiet)
    assert summary["resumed_from"] == 1 and summary["env_steps"] == 40
    assert [m["episode"] for m in read_metrics(run_dir)] == [0, 1]
    assert sorted(p.name for p in (run_dir / "episodes").iterdir()) == [
        "000000_20.npz", "000001_20.npz"
    ]
