"""Crash-safe checkpoints: atomic writes, a checksum checked on load, fallback to older ones.

A checkpoint file is `PLANETCK` + sha256 (32 bytes) + the bytes of `torch.save(payload)`. It is
written to a temporary file, fsynced and renamed, so a kill at any moment leaves either the old
file or the new one, never half of one. `checkpoints/episode_<N>.pt` holds the state after N
collected episodes; the last `keep` files are kept so a damaged newest one has a fallback.
`planet.resume.resume_point` picks the newest checkpoint that loads *and* whose episodes all
load from the replay on disk, and sets aside (renames to `*.damaged`) the newer ones it skipped.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from planet.atomic_files import atomic_write_bytes
from planet.config import Config, current_names, flatten
from planet.errors import RunFileError

MAGIC = b"PLANETCK"
# The names checkpoint_path gives; only these are listed, loaded, pruned or set aside.
CHECKPOINT_NAME = re.compile(r"episode_(?P<episode>\d{6,})\.pt")


class CheckpointError(RunFileError):
    """A damaged or incompatible checkpoint. `damaged` is False when the file could not be read
    at all (permissions, an I/O error): a resume then stops rather than set the checkpoint aside
    and fall back to an older one."""

    def __init__(self, reason: str, advice: str = "", damaged: bool = True):
        super().__init__(reason, advice)
        self.damaged = damaged


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(Path(path), MAGIC + hashlib.sha256(data).digest() + data)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}",
                              damaged=False) from None
    header = len(MAGIC) + 32
    if len(raw) < header or not raw.startswith(MAGIC):
        raise CheckpointError(
            f"checkpoint {path} is not a planet checkpoint or is truncated ({len(raw)} bytes)",
            _FALLBACK_HINT,
        )
    digest, data = raw[len(MAGIC) : header], raw[header:]
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} fails its sha256 checksum (truncated or corrupted)",
            _FALLBACK_HINT,
        )
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:  # load errors have many types; all mean "cannot use it"
        # The safe loader names what it refused as "GLOBAL module.name" (garbage gets another
        # refusal). PyTorch's message suggests weights_only=False: never pass that advice on.
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if isinstance(error, pickle.UnpicklingError) and refused:
            raise CheckpointError(
                f"checkpoint {path} holds code or objects ({refused.group(1)}) that planet never "
                "writes, so it was refused unread; do not load files from untrusted sources"
            ) from None
        first_line = (str(error).splitlines() or [""])[0][:120]
        detail = f": {first_line}" if first_line and "weights_only" not in first_line else ""
        raise CheckpointError(
            f"checkpoint {path} passes its checksum but cannot be loaded "
            f"({type(error).__name__}{detail}); it was probably written by an incompatible "
            "version of planet or torch"
        ) from None


# Config sections that decide the weights' shapes and what they mean: a checkpoint whose saved
# config differs from config.json in any of these is refused.
MODEL_SECTIONS = ("model.", "env.name", "env.symbolic", "env.image_size", "env.action_repeat")


def check_fits_config(config: Config, payload: dict, path: Path, config_path: Path) -> None:
    """Refuse, in one line, a checkpoint saved under a config that builds another model (for
    instance after config.json was edited to another model size)."""
    if "model" not in payload:
        raise CheckpointError(f"checkpoint {path} holds no model weights")
    saved = payload.get("config")
    if not isinstance(saved, dict):
        return  # an old checkpoint without its config: load_model_weights still checks shapes
    old, new = current_names(flatten(saved)), flatten(config.to_dict())
    differ = [
        key for key in sorted(new)
        if key.startswith(MODEL_SECTIONS) and key in old and old[key] != new[key]
    ]
    if differ:
        details = ", ".join(f"{key} {old[key]!r} vs {new[key]!r}" for key in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise CheckpointError(
            f"checkpoint {path} comes from an incompatible config (checkpoint vs "
            f"{config_path}: {details}{more})"
        )


def load_model_weights(model: torch.nn.Module, payload: dict, path: Path,
                       config_path: Path) -> None:
    """model.load_state_dict, with a shape mismatch reported in one line, not PyTorch's list.
    All or nothing: load_state_dict copies the tensors that fit before it raises, so on a
    mismatch the model gets its own weights back."""
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        model.load_state_dict(before)
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit the model in {config_path}: {detail}"
        ) from None


_FALLBACK_HINT = (
    "`planet train --resume` falls back to the previous checkpoint by itself; "
    "to use this run elsewhere, delete this file"
)


def checkpoint_path(directory: Path, episode: int) -> Path:
    return directory / f"episode_{episode:06d}.pt"


def is_checkpoint_file(path: str | Path) -> bool:
    """Whether a name is one planet gives checkpoints ('episode_000042.pt', not a user's
    'episode_best.pt')."""
    return CHECKPOINT_NAME.fullmatch(Path(path).name) is not None


def checkpoint_episode(path: str | Path) -> int:
    """The episodes a checkpoint covers, from its name: 'episode_000042.pt' -> 42."""
    match = CHECKPOINT_NAME.fullmatch(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path} is not a checkpoint planet named (episode_<N>.pt)")
    return int(match["episode"])


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files planet named, newest (most episodes) first; other files are ignored."""
    paths = [path for path in Path(directory).glob("episode_*.pt") if is_checkpoint_file(path)]
    return sorted(paths, key=checkpoint_episode, reverse=True)


def last_checkpoint_line(run_dir: str | Path) -> str:
    """Where a stopped run stands, for its error message: 'the last checkpoint is
    RUN_DIR/checkpoints/episode_000004.pt' or 'no checkpoint was written yet'."""
    kept = list_checkpoints(Path(run_dir) / "checkpoints")
    return f"the last checkpoint is {kept[0]}" if kept else "no checkpoint was written yet"


def load_latest(directory: str | Path, map_location="cpu", warn=print):
    """Load the newest checkpoint that passes its checks; returns (path, payload) or None.

    A damaged file is reported through `warn` and skipped, falling back to the next older one.
    """
    for path in list_checkpoints(directory):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as error:
            warn(f"warning: {error}; trying an older checkpoint")
    return None


def set_aside(path: str | Path) -> Path:
    """Rename a checkpoint that must not be used again to `<name>.damaged` (kept for a look).
    Only planet's own checkpoint names are renamed; anything else is a bug in the caller."""
    path = Path(path)
    if not is_checkpoint_file(path):
        raise ValueError(f"{path} is not a checkpoint name planet writes; not renaming it")
    target = path.with_name(path.name + ".damaged")
    path.replace(target)
    return target


def prune_checkpoints(directory: str | Path, keep: int = 2) -> None:
    for path in list_checkpoints(directory)[keep:]:
        path.unlink(missing_ok=True)
