"""Files that a kill or a power cut leaves whole or not at all: every file planet writes in a run
folder (episodes, checkpoints, config.json, metrics.jsonl, sweep.json) goes through
atomic_write_bytes: a temporary file beside the target, fsync, rename over it, fsync the folder.
A kill in the middle leaves only the temporary file, which the next start removes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# The temporary files of the atomic writer: '.<name>.planet-tmp.<pid>'. Start-up cleanup touches
# only files whose whole name matches.
TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.planet-tmp\.(?P<pid>\d+)")


def temporary_path(path: str | Path, pid: int | None = None) -> Path:
    """Where atomic_write_bytes writes `path` first: '.<name>.planet-tmp.<pid>' beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.planet-tmp.{os.getpid() if pid is None else pid}")


def is_temporary_file(path: str | Path) -> bool:
    """Whether a name is one planet's atomic writer gives its temporary files."""
    return TEMPORARY_NAME.fullmatch(Path(path).name) is not None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename over `path`."""
    path = Path(path)
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        # Name the file the user cares about (write() errors carry no file name).
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    finally:
        if temporary.exists():
            temporary.unlink()
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a new or renamed entry in `directory` survive a power cut (fsync the folder)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_temporary_files(directory: Path) -> list[Path]:
    """Delete the temporary files of writes that a kill interrupted; returns them.

    Only names planet's own writer gives (`is_temporary_file`): other files are left alone.
    The caller holds the run folder's lock, so no live writer's file is among them.
    """
    stale = sorted(path for path in Path(directory).iterdir()
                   if is_temporary_file(path) and path.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
