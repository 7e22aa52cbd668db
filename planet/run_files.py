"""Which files in a run folder are planet's own, so that no command writes over them by accident.

    RUN_DIR/config.json  metrics.jsonl  resumes.jsonl  .lock      the run's own files
    RUN_DIR/checkpoints/ episodes/  tb/                            the run's own folders
    RUN_DIR/videos/  eval.json                                     outputs of predict/evaluate
    RUN_DIR/train.log  sweep-attempts.jsonl                        planet sweep's, per run

`planet train` checks a folder before it writes into it (`check_run_folder`): a config.json that
is not a planet config is never overwritten, a folder holding other files is named in a warning,
and files in checkpoints/ and episodes/ whose names planet does not give are left alone and
reported. `predict` and `evaluate` refuse an output path that is one of a run's own files
(`refuse_run_files`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from planet.atomic_files import is_temporary_file
from planet.checkpoint import is_checkpoint_file
from planet.config import Config
from planet.data.replay import is_episode_file
from planet.errors import TrainError
from planet.run_lock import LOCK_FILE_NAME, RunLockedError, hold_run_dir

OWN_FILES = ("config.json", "metrics.jsonl", "resumes.jsonl", LOCK_FILE_NAME)
OWN_FOLDERS = ("checkpoints", "episodes", "tb")
OUTPUT_NAMES = ("videos", "eval.json")
# What `planet sweep` keeps in each run folder beside the run's own files.
SWEEP_LOG_FILE, SWEEP_ATTEMPTS_FILE = "train.log", "sweep-attempts.jsonl"
SWEEP_FILES = (SWEEP_LOG_FILE, SWEEP_ATTEMPTS_FILE)


def load_run_config(run_dir: str | Path) -> Config:
    """The run's resolved config (config.json); a missing run folder, or a missing or damaged
    config, is a TrainError."""
    require_run_folder(run_dir)
    path = Path(run_dir) / "config.json"
    try:
        return Config.load(path)
    except (ValueError, AttributeError, TypeError) as error:  # bad JSON, field or shape
        raise TrainError(f"cannot read {path}: {error}") from None


def is_run_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def require_run_folder(run_dir: str | Path) -> None:
    """A TrainError unless `run_dir` is a folder with a config.json."""
    if not Path(run_dir).is_dir():
        raise TrainError(f"run dir {run_dir} does not exist")
    if not is_run_folder(Path(run_dir)):
        raise TrainError(f"{run_dir} is not a run dir: config.json not found")


def run_file_owner(path: str | Path) -> Path | None:
    """The run folder `path` is one of the own files of (config.json, checkpoints/...), or None."""
    resolved = Path(path).resolve()
    for folder in resolved.parents:
        if not is_run_folder(folder):
            continue
        parts = resolved.relative_to(folder).parts
        if (len(parts) == 1 and parts[0] in OWN_FILES + SWEEP_FILES) or parts[0] in OWN_FOLDERS:
            return folder
    return None


def refuse_run_files(outputs: list[tuple[str, Path]]) -> None:
    """Raise a one-line TrainError when an output path would overwrite a run's own file.

    Args:
        outputs: (option that chose it, path) for every file a command is about to write.
    """
    for option, path in outputs:
        owner = run_file_owner(path)
        if owner is not None:
            raise TrainError(
                f"{option} would write {path}, which belongs to the run in {owner} (its "
                "config, metrics, checkpoints, episodes, TensorBoard events or sweep log); "
                "choose another path"
            )


@contextlib.contextmanager
def guard_outputs(run_dir: Path, outputs: list[tuple[str, Path]], command: str):
    """For a command that reads `run_dir` and writes `outputs`: refuse outputs that are a run's
    own files, and hold run_dir's lock while writing when any output lies inside it (so it
    waits for no one and blocks no one when it writes elsewhere)."""
    require_run_folder(run_dir)  # before the outputs: they would be judged against another run
    refuse_run_files(outputs)
    inside = [option for option, path in outputs
              if run_dir.resolve() in path.resolve().parents]
    with contextlib.ExitStack() as stack:
        if inside:
            try:
                stack.enter_context(hold_run_dir(run_dir, command))
            except RunLockedError as error:
                raise RunLockedError(
                    f"{error}, or write elsewhere with {' and '.join(dict.fromkeys(inside))}"
                ) from None
        yield


def check_run_folder(run_dir: Path, log) -> None:
    """Before training writes into `run_dir`: refuse, warn or report (see the module doc)."""
    if not run_dir.is_dir():
        return
    config_path = run_dir / "config.json"
    if config_path.exists():
        try:
            Config.load(config_path)
        except (ValueError, AttributeError, TypeError) as error:  # bad JSON, field or shape
            raise TrainError(
                f"{config_path} is not a planet config ({error}); planet does not overwrite "
                "it: use another --run-dir"
            ) from None
    else:
        others = sorted(path.name for path in run_dir.iterdir() if not _planet_named(path))
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if others[3:] else "")
            log(f"warning: run dir {run_dir} is not a planet run folder and is not empty (it "
                f"holds {shown}); training writes its files beside them and leaves them alone")
    for path in foreign_files(run_dir):
        log(f"warning: {path} is not a file planet writes; left alone (not loaded, not removed)")


def _planet_named(path: Path) -> bool:
    known = OWN_FILES + OWN_FOLDERS + OUTPUT_NAMES + SWEEP_FILES
    return path.name in known or is_temporary_file(path)


def foreign_files(run_dir: Path) -> list[Path]:
    """Files in checkpoints/ and episodes/ whose names planet does not give."""
    checks = {
        "checkpoints": lambda p: is_checkpoint_file(p)
        or (p.suffix == ".damaged" and is_checkpoint_file(p.stem)),
        "episodes": is_episode_file,
    }
    found = []
    for folder, planet_named in checks.items():
        directory = run_dir / folder
        if directory.is_dir():
            found += [path for path in sorted(directory.iterdir())
                      if not (planet_named(path) or is_temporary_file(path))]
    return found
