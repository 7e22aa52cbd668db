"""Replay of whole episodes, sampled as fixed-length chunks that never cross episodes: the
dataset D of Algorithm 1, from which each update draws B chunks of length L (paper Sec. 5).

Each episode is kept as it was collected, as uint8 frames, and grows memory one episode at a time
(no up-front allocation of the whole capacity). With a `directory`, each episode is also written to
disk when it completes, atomically, as `<index>_<length>.npz`; the files on disk are the source of
truth that a resumed run reloads.

Memory: `max_episodes_in_memory` (config `train.max_episodes_in_memory`, 0 = no cap) bounds the
episodes held in RAM. When the cap is passed, the oldest resident episodes are dropped from RAM
(never from the replay): they stay on disk, are still sampled with the same probability, and are
read back from their file (checksum verified) when a chunk is drawn from them. So memory holds at
most the cap's episodes plus the episodes of one batch, and sampling the old ones costs a disk read.

Time alignment inside an episode of N agent steps (arrays of length N + 1):

    index t        0        1        2      ...    N
    obs[t]         o_0      o_1      o_2           o_N      o_0 is the reset observation
    action[t]      0        a_0      a_1           a_{N-1}  the action that *led to* obs[t]
    reward[t]      0        r_0      r_1           r_{N-1}  the reward received with obs[t]

So one row t holds (a_{t-1}, r_{t-1}, o_t): the RSSM step h_t = f(h_{t-1}, s_{t-1}, a_{t-1})
reads `action[t]`, the posterior q(s_t | h_t, o_t) reads `obs[t]`, and the reward model
p(r | h_t, s_t) is trained on `reward[t]`. Row 0 has a zero action and zero reward.
"""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planet.atomic_files import atomic_write_bytes
from planet.errors import RunFileError

EPISODE_KEYS = ("obs", "action", "reward")
# The names planet gives episode files: resume touches only files whose whole name matches.
EPISODE_NAME = re.compile(r"(?P<index>\d{6,})_(?P<length>\d+)\.npz")


class ReplayError(RunFileError):
    """Bad replay state or a damaged episode file."""


@dataclass
class Chunks:
    """A batch of chunks, time-major: obs (T, B, ...), action (T, B, A), reward (T, B)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray


def quantise_frames(frames: np.ndarray, bit_depth: int) -> np.ndarray:
    """Drop the low bits of uint8 frames (stored this way, they compress far better)."""
    shift = 8 - bit_depth
    return (frames >> shift) << shift


class EpisodeReplay:
    """Whole episodes in memory (and on disk with `directory`), sampled as chunks.

    Usage:
        replay = EpisodeReplay(directory="run/episodes")
        replay.add({"obs": obs, "action": action, "reward": reward})  # arrays of length N + 1
        chunks = replay.sample(batch_size=50, chunk_length=50, rng=np.random.default_rng(0))
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        bit_depth: int = 5,
        max_episodes_in_memory: int = 0,
    ):
        if max_episodes_in_memory < 0:
            raise ReplayError(
                f"max_episodes_in_memory must be >= 0 (0: no cap), got {max_episodes_in_memory}"
            )
        self.directory = Path(directory) if directory is not None else None
        self.bit_depth = bit_depth
        self.max_episodes_in_memory = max_episodes_in_memory
        self.episodes: list[dict[str, np.ndarray] | None] = []
        self.lengths: list[int] = []  # agent steps N per episode (arrays hold N + 1 rows)
        self.paths: list[Path | None] = []
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    # --- adding --------------------------------------------------------------------------------
    def add(self, episode: dict[str, np.ndarray]) -> int:
        """Store one finished episode; returns its index."""
        missing = [key for key in EPISODE_KEYS if key not in episode]
        if missing:
            raise ReplayError(f"episode is missing {missing}")
        rows = len(episode["obs"])
        if rows < 2 or any(len(episode[key]) != rows for key in EPISODE_KEYS):
            raise ReplayError(
                "episode arrays must share a length of at least 2 (reset row + one step), got "
                + str({key: len(episode[key]) for key in EPISODE_KEYS})
            )
        obs = np.asarray(episode["obs"])
        if obs.dtype == np.uint8:
            obs = quantise_frames(obs, self.bit_depth)
        stored = {
            "obs": np.ascontiguousarray(obs),
            "action": np.asarray(episode["action"], dtype=np.float32),
            "reward": np.asarray(episode["reward"], dtype=np.float32),
        }
        index = len(self.episodes)
        path = None
        if self.directory is not None:
            path = self.directory / f"{index:06d}_{rows - 1}.npz"
            save_episode(path, stored)
        self._append(stored, rows - 1, path)
        return index

    def _append(self, episode: dict[str, np.ndarray], length: int, path: Path | None) -> None:
        self.episodes.append(episode)
        self.lengths.append(length)
        self.paths.append(path)
        self._evict()

    def _evict(self) -> None:
        """Keep at most `max_episodes_in_memory` episodes in RAM (0: all); the oldest go first.

        Evicted episodes stay in the replay: they are read back from their file when sampled.
        """
        if not self.max_episodes_in_memory or self.directory is None:
            return
        resident = [i for i, episode in enumerate(self.episodes) if episode is not None]
        for index in resident[: max(0, len(resident) - self.max_episodes_in_memory)]:
            self.episodes[index] = None

    @property
    def resident(self) -> int:
        """Episodes currently held in RAM."""
        return sum(episode is not None for episode in self.episodes)

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """An episode's arrays; one evicted from RAM is read back from its file (checksum
        verified)."""
        episode = self.episodes[index]
        if episode is None:
            path = self.paths[index]
            assert path is not None
            episode = load_episode(path)
        return episode

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, directory: str | Path, bit_depth: int = 5, max_episodes_in_memory: int = 0,
        limit: int | None = None,
    ) -> EpisodeReplay:
        """Reload every episode file in `directory` in index order (the first `limit` of them)."""
        replay = cls(None, bit_depth, max_episodes_in_memory)
        replay.directory = Path(directory)  # set after: loading must not create the folder
        files = list_episode_files(directory)
        for expected, path in enumerate(files[:limit]):
            index, length = _parse_name(path)
            if index != expected:
                raise ReplayError(f"episode files are not contiguous: expected index {expected}, "
                                  f"found {path.name} in {directory}")
            episode = load_episode(path)
            if len(episode["obs"]) != length + 1:
                raise ReplayError(f"episode file {path} holds {len(episode['obs']) - 1} steps, "
                                  f"but its name says {length}; the file is damaged")
            replay._append(episode, length, path)
        return replay

    # --- sampling ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        return int(sum(self.lengths))

    def sample(self, batch_size: int, chunk_length: int, rng: np.random.Generator) -> Chunks:
        """Draw `batch_size` chunks of `chunk_length` rows, uniformly over all valid start rows.

        A chunk is rows [start, start + chunk_length) of one episode; it never crosses episodes.
        Episodes shorter than the chunk are never drawn; if none is long enough, raises.
        """
        rows = np.asarray(self.lengths) + 1  # (E,): an episode of N agent steps has N + 1 rows
        starts_per_episode = np.maximum(rows - chunk_length + 1, 0)  # (E,)
        total = int(starts_per_episode.sum())
        if total == 0:
            longest = int(rows.max()) if len(rows) else 0
            raise ReplayError(
                f"no episode is long enough for chunks of {chunk_length} rows "
                f"({chunk_length - 1} agent steps; {len(self)} episodes, the longest has "
                f"{longest} rows); lower train.chunk_length"
            )
        # Uniform over every (episode, start) pair: draw a flat position, then locate it.
        flat = rng.integers(0, total, size=batch_size)  # (B,)
        bounds = np.cumsum(starts_per_episode)  # (E,)
        episode_ids = np.searchsorted(bounds, flat, side="right")  # (B,)
        starts = flat - (bounds[episode_ids] - starts_per_episode[episode_ids])  # (B,) first rows
        obs, action, reward = [], [], []
        batch_episodes: dict[int, dict[str, np.ndarray]] = {}  # read each evicted file once
        for episode_id, start in zip(episode_ids, starts, strict=True):
            if int(episode_id) not in batch_episodes:
                batch_episodes[int(episode_id)] = self.episode(int(episode_id))
            episode = batch_episodes[int(episode_id)]
            window = slice(int(start), int(start) + chunk_length)
            obs.append(episode["obs"][window])
            action.append(episode["action"][window])
            reward.append(episode["reward"][window])
        # Stack batch-second: (T, B, ...).
        return Chunks(
            obs=np.stack(obs, axis=1),
            action=np.stack(action, axis=1),
            reward=np.stack(reward, axis=1),
        )


# --- episode files -------------------------------------------------------------------------------
def save_episode(path: Path, episode: dict[str, np.ndarray]) -> None:
    """Write an episode atomically: compressed npz with a CRC32 of its arrays, fsync, rename."""
    buffer = io.BytesIO()
    checksum = np.array(_checksum(episode), dtype=np.uint32)
    np.savez_compressed(buffer, checksum=checksum, **episode)
    atomic_write_bytes(path, buffer.getvalue())


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """Read and verify an episode file; a damaged file raises ReplayError naming it."""
    try:
        with np.load(path) as data:
            episode = {key: data[key] for key in EPISODE_KEYS}
            stored = int(data["checksum"])
    except Exception as error:  # zip, pickle or key errors all mean the same to the user
        raise ReplayError(
            f"episode file {path} is unreadable, truncated or corrupted "
            f"({type(error).__name__}: {error})", _DAMAGED_HINT,
        ) from None
    if _checksum(episode) != stored:
        raise ReplayError(f"episode file {path} fails its CRC32 checksum (corrupted)",
                          _DAMAGED_HINT)
    return episode


_DAMAGED_HINT = (
    "a resume falls back to a checkpoint taken before this episode when one exists; otherwise "
    "the run cannot continue exactly: start a new --run-dir"
)


def _parse_name(path: Path) -> tuple[int, int]:
    """'000042_125.npz' -> (42, 125)."""
    match = EPISODE_NAME.fullmatch(path.name)
    if match is None:
        raise ReplayError(f"{path} is not an episode file (expected <index>_<length>.npz); "
                          "move it out of the episodes folder")
    return int(match["index"]), int(match["length"])


def _checksum(episode: dict[str, np.ndarray]) -> int:
    value = 0
    for key in EPISODE_KEYS:
        value = zlib.crc32(np.ascontiguousarray(episode[key]).tobytes(), value)
    return value


def list_episode_files(directory: str | Path) -> list[Path]:
    """The episode files planet named in `directory`, in index order; other files are ignored."""
    return sorted((path for path in Path(directory).glob("*.npz") if is_episode_file(path)),
                  key=episode_index)  # by number: past 999999 the name is one digit longer


def is_episode_file(path: str | Path) -> bool:
    """Whether a name is one planet gives episode files: '000042_125.npz'."""
    return EPISODE_NAME.fullmatch(Path(path).name) is not None


def episode_index(path: Path) -> int:
    """The index in an episode file's name: '000042_125.npz' -> 42."""
    return _parse_name(Path(path))[0]
