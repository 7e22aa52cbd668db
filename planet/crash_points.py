"""Crash tests: PLANET_TEST_KILL_AT="phase:episode:index" makes a training process SIGKILL itself
at that point: a real kill at a chosen moment (tests/test_resume.py). OpenRun.kill_at holds it.

Phase "update": before update `index` of episode `episode`; "collect": at agent step `index` of
that episode's collection; "checkpoint": after the episode is stored and logged, before its
checkpoint is written. Unset (always, outside tests), it costs nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

KillPoint = tuple[str, int, int]  # (phase, episode, index)


def kill_point_from_env() -> KillPoint | None:
    spec = os.environ.get("PLANET_TEST_KILL_AT")
    if not spec:
        return None
    phase, episode, index = spec.split(":")
    return phase, int(episode), int(index)


def maybe_kill(kill_at: KillPoint | None, phase: str, episode: int, index: int) -> None:
    if kill_at == (phase, episode, index):
        os.kill(os.getpid(), signal.SIGKILL)


def collect_kill_hook(kill_at: KillPoint | None, episode: int) -> Callable[[int], None] | None:
    if kill_at is None or kill_at[0] != "collect":
        return None
    return lambda step: maybe_kill(kill_at, "collect", episode, step)
