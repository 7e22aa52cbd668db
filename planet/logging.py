"""Run logging: metrics.jsonl (one JSON object per collected episode), TensorBoard, console."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


class Logger:
    """Writes each episode's metrics to `metrics.jsonl` and TensorBoard (train/, eval/, loss/,
    timing/ namespaces). On resume, lines for episodes at or past `start_episode` are dropped
    first, so the file never holds an episode twice."""

    def __init__(self, run_dir: Path, start_episode: int = 0, tensorboard: bool = True,
                 purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._truncate(start_episode)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events at steps >= purge_step that a killed run logged after its
            # last checkpoint. Scalars are logged at env steps, so the caller passes the
            # checkpoint's env steps + 1.
            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def _truncate(self, start_episode: int) -> None:
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if record.get("episode", math.inf) < start_episode:
                kept.append(line)
        # Atomic, so a kill during the rewrite cannot lose the lines kept.
        from planet.data.replay import atomic_write_bytes

        atomic_write_bytes(self.metrics_path, "".join(line + "\n" for line in kept).encode())

    def log_episode(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
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
