"""Run logging: metrics.jsonl (one JSON object per collected episode), TensorBoard, console."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from planet.atomic_files import atomic_write_bytes, fsync_directory


class Logger:
    """Writes each episode's metrics to `metrics.jsonl` and TensorBoard (train/, eval/, loss/,
    timing/ namespaces).

    On resume, lines for episodes at or past `start_episode` are dropped first, so the file
    never holds an episode twice. A line of an earlier episode that cannot be read (or is
    missing) is reported through `warn` with its episode number, and rebuilt with
    `rebuild(episode)` when given (see planet.resume.metrics_rebuilder), else dropped."""

    def __init__(self, run_dir: Path, start_episode: int = 0, tensorboard: bool = True,
                 purge_step: int | None = None,
                 rebuild: Callable[[int], dict[str, Any]] | None = None, warn=print):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._truncate(start_episode, rebuild, warn)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events at steps >= purge_step that a killed run logged after its
            # last checkpoint. Scalars are logged at env steps, so the caller passes the
            # checkpoint's env steps + 1.
            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def _truncate(self, start_episode: int, rebuild, warn) -> None:
        if start_episode == 0 and not self.metrics_path.exists():
            return
        text = self.metrics_path.read_text(errors="replace") if self.metrics_path.exists() else ""
        records, bad_lines = parse_metrics(text)
        kept = [record for _, record in records
                if record.get("episode", math.inf) < start_episode]
        present = {record.get("episode") for record in kept}
        unreadable = _episodes_of_bad_lines(records, bad_lines)
        missing = [episode for episode in range(start_episode) if episode not in present]
        _warn_missing(self.metrics_path, missing, unreadable, rebuild is not None, warn)
        if rebuild is not None:
            kept += [rebuild(episode) for episode in missing]
        kept.sort(key=lambda record: record.get("episode", math.inf))  # stable: order kept
        # Atomic, so a kill during the rewrite cannot lose the lines kept.
        lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in kept)
        atomic_write_bytes(self.metrics_path, lines.encode())

    def log_episode(self, record: dict[str, Any]) -> None:
        """Append the episode's line, flushed and fsynced (it must be on disk before the
        checkpoint that counts its episode), then log it to TensorBoard."""
        created = not self.metrics_path.exists()
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_directory(self.metrics_path.parent)
        if self.writer is None:
            return
        step = record["env_steps"]
        for key, value in record.items():
            if key in ("episode", "env_steps") or not isinstance(value, int | float):
                continue
            if key.startswith("loss_"):
                tag = "loss/" + key[5:]
            elif key.startswith("time_"):
                tag = "timing/" + key[5:]
            elif key.startswith("eval_"):
                tag = "eval/" + key[5:]
            else:
                tag = "train/" + key
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def log_image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image_hwc, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class MetricsError(ValueError):
    """An unreadable line in metrics.jsonl; the message names the file and the line."""


def _warn_missing(metrics_path: Path, missing: list[int], unreadable: dict[int, int],
                  rebuilt: bool, warn) -> None:
    """Warn once per unreadable line, and once for all episodes with no line, saying whether
    their metrics were rebuilt from the episode files."""
    if rebuilt:
        one = many = ("rebuilt from the episode file (return and steps; its losses and timings "
                      "are lost)")
    else:
        one = "it cannot be rebuilt here, so the run has no metrics for it"
        many = "they cannot be rebuilt here, so the run has no metrics for them"
    for episode in missing:
        if episode in unreadable:
            warn(f"warning: {metrics_path} line {unreadable[episode]} (episode {episode}) cannot "
                 f"be read; {one}")
    absent = [episode for episode in missing if episode not in unreadable]
    if absent:
        shown = ", ".join(map(str, absent[:5])) + (" ..." if absent[5:] else "")
        warn(f"warning: {metrics_path} has no line for episode(s) {shown}; {many}")


def _episodes_of_bad_lines(records: list[tuple[int, dict]], bad_lines: list[int]) -> dict:
    """{episode: line number} for unreadable lines: lines are written in episode order, so a bad
    line holds the episode after the readable line before it (0 at the top)."""
    episode_at = dict(records)
    found, expected = {}, 0
    for number in sorted([*episode_at, *bad_lines]):
        if number in episode_at:
            episode = episode_at[number].get("episode")
            expected = episode + 1 if isinstance(episode, int) else expected
        else:
            found.setdefault(expected, number)
            expected += 1
    return found


def parse_metrics(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[int]]:
    """metrics.jsonl text -> ([(line number, record)], [line numbers that are not a JSON
    object]); line numbers count from 1, blank lines are skipped."""
    records, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append((number, record))
        else:
            bad.append(number)
    return records, bad


def read_metrics(run_dir: str | Path, warn=None) -> list[dict[str, Any]]:
    """The records of RUN_DIR/metrics.jsonl ([] when it does not exist).

    A line that does not parse (a half line at the end, while a run writes or after a power
    loss) is skipped and reported through `warn(message)`; without `warn` it raises
    MetricsError.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records, bad = parse_metrics(path.read_text(errors="replace"))
    for number in bad:
        message = f"{path} line {number} is not a complete JSON object (cut short?)"
        if warn is None:
            raise MetricsError(message)
        warn(f"warning: {message}; skipped")
    return [record for _, record in records]
