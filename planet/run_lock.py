"""One writer per run folder: an exclusive OS file lock on RUN_DIR/.lock.

    with hold_run_dir(run_dir, "planet train"):
        ...  # the only process writing into run_dir

The lock is `fcntl.flock` on an open file, so the kernel releases it when the holder's process
ends in any way, SIGKILL included: no stale PID file to clean up by hand. While it is held, the
lock file names its holder (pid, host, start time, command) for the error a second writer gets.

The lock file is never deleted, not even on release: unlinking a flock'd file races (a third
process could lock the new file while a second still holds the unlinked one). It is not a
temporary file, so start-up cleanup leaves it alone.

Readers (plot, watch, evaluate or predict writing elsewhere) never take the lock. Locks on
network file systems depend on the server; on a local disk they are exact.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from planet.errors import TrainError

LOCK_FILE_NAME = ".lock"
RETRY_SECONDS = 0.2


class RunLockedError(TrainError):
    """Another process holds the run folder's lock; the message names it in one line."""


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK_FILE_NAME


def refuse_non_directory(run_dir: Path, what: str = "run dir") -> None:
    """A TrainError when `run_dir` exists as something other than a folder (a file, say)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"{what} {run_dir} exists and is not a directory")


@contextlib.contextmanager
def hold_run_dir(run_dir: str | Path, command: str, wait: float = 0.0,
                 what: str = "run dir") -> Iterator[Path]:
    """Hold the exclusive lock on `run_dir` (created if missing) for the `with` block.

    Args:
        run_dir: the run folder.
        command: what the holder is doing, e.g. "planet train" (shown to a second writer).
        wait: seconds to keep retrying (every RETRY_SECONDS) while another process holds it;
            0 tries once.
        what: the folder's name in the error ("sweep folder" for `planet sweep`'s).
    Yields:
        The lock file's path.
    Raises:
        RunLockedError: another process still holds the lock after `wait` seconds.
        TrainError: run_dir exists and is not a folder.
    """
    run_dir = Path(run_dir)
    refuse_non_directory(run_dir, what)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(descriptor, run_dir, path, wait, what)
        _write_holder(descriptor, command)
        yield path
    finally:
        os.close(descriptor)  # closing the last descriptor releases the lock


def _acquire(descriptor: int, run_dir: Path, path: Path, wait: float, what: str) -> None:
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RunLockedError(
                    f"{what} {run_dir} is in use by {describe_holder(path)}; "
                    "wait for it to finish or stop it"
                ) from None
            time.sleep(RETRY_SECONDS)


def _write_holder(descriptor: int, command: str) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
    }
    data = (json.dumps(holder) + "\n").encode()
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, data, 0)
    os.fsync(descriptor)


def read_holder(run_dir: str | Path) -> dict | None:
    """What the lock file says about its (current or last) holder, or None when unreadable."""
    try:
        holder = json.loads(lock_path(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(path: Path) -> str:
    """'planet train (pid 123 on host h, since 2026-11-29T22:40:01+00:00)', or a fallback while
    the holder has not written its details yet."""
    holder = read_holder(path.parent)
    if holder is None:
        return "another process (its details are not written yet)"
    return (f"{holder.get('command', 'another process')} (pid {holder.get('pid', '?')} "
            f"on host {holder.get('host', '?')}, since {holder.get('since', '?')})")

