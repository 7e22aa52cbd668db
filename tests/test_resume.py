"""Kill runs with SIGKILL at chosen points, resume them, and check that nothing was lost or changed.

The killed runs are `python -m planet train` subprocesses that SIGKILL themselves at a chosen
point (PLANET_TEST_KILL_AT="phase:episode:index", see planet.crash_points): a real kill, at a point
that polling from outside could not hit reliably on a loaded 2-core machine. Every run uses
toy:dot (30-step episodes) with the smoke preset, float32 and machine.deterministic, so a run
that was never interrupted is an exact reference for the numbers a resumed run must log.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import quiet

import planet.train
from planet import cli
from planet.atomic_files import is_temporary_file, temporary_path
from planet.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from planet.data.replay import EpisodeReplay
from planet.errors import TrainError
from planet.logging import read_metrics
from planet.resume import check_resume_config
from planet.run_lock import LOCK_FILE_NAME
from planet.train import train

EPISODES = 3  # episode 0 with random actions, then 1 and 2 with updates and the planner
STEPS = 20  # agent steps per episode; action repeat 1, so env steps too
UPDATES = 2  # C
ARGS = [
    "--preset", "smoke", "--env", "toy:dot", "--episodes", str(EPISODES), "--seed", "3",
    "--set", "train.seed_episodes=1", "--set", f"train.collect_interval={UPDATES}",
    "--set", f"env.max_episode_steps={STEPS}", "--set", "train.test_interval=1",
    "--set", "train.image_log_interval=1", "--set", "machine.precision=float32",
    "--set", "machine.deterministic=true",
]
VOLATILE = ("time_", "wall_time")  # wall-clock values differ between any two runs


def make_config(*extra: str):
    """The config that `planet train ARGS` resolves to, so in-process and CLI runs agree."""
    args = cli.build_parser().parse_args(["train", *ARGS, *extra])
    config, _ = cli.resolve_train_config(args)
    return config


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run with the same seed and config as the killed ones (~10 s)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(make_config(), run_dir, progress=False, log=quiet)
    return run_dir


def stable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in records]


def run_killed(run_dir: Path, kill_at: str) -> None:
    """Start `planet train` in a subprocess that SIGKILLs itself at `kill_at`."""
    result = subprocess.run(
        [sys.executable, "-m", "planet", "train", *ARGS, "--run-dir", str(run_dir),
         "--no-progress"],
        env={**os.environ, "PLANET_TEST_KILL_AT": kill_at, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


def resume_via_cli(run_dir: Path, argv: list[str], monkeypatch) -> dict:
    """Resume through `planet train ...` in-process; capture the state at the first update."""
    captured: dict = {}

    def hook(learner, chunks):
        if captured:
            return
        captured["model"] = {k: v.clone() for k, v in learner.model.state_dict().items()}
        captured["optimizer"] = copy.deepcopy(learner.optimizer.state_dict())
        captured["torch"] = torch.get_rng_state()
        captured["numpy"] = np.random.get_state(legacy=False)
        captured["python"] = random.getstate()
        captured["chunks"] = copy.deepcopy(chunks)

    original = planet.train.train
    monkeypatch.setattr(planet.train, "train",
                        lambda *a, **k: original(*a, **k, fault_hook=hook, log=quiet))
    assert cli.main(argv) == 0
    return captured


def assert_same_state(captured: dict, payload: dict, run_dir: Path, config) -> None:
    """The state at the first update after resume is the state the checkpoint saved."""
    assert captured["model"].keys() == payload["model"].keys()
    for key, value in payload["model"].items():
        assert torch.equal(captured["model"][key], value), key
    optimizer = captured["optimizer"]
    assert optimizer["param_groups"] == payload["optimizer"]["param_groups"]
    assert optimizer["state"].keys() == payload["optimizer"]["state"].keys()
    assert len(optimizer["state"]) > 0
    for index, state in payload["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(optimizer["state"][index][name], value), (index, name)
    assert torch.equal(captured["torch"], payload["rng"]["torch"])
    saved_numpy, numpy_state = payload["rng"]["numpy"], captured["numpy"]
    assert np.array_equal(numpy_state["state"]["key"], saved_numpy["key"].numpy())
    assert numpy_state["state"]["pos"] == saved_numpy["pos"]
    assert (numpy_state["has_gauss"], numpy_state["gauss"]) == (saved_numpy["has_gauss"],
                                                                saved_numpy["gauss"])
    assert captured["python"] == tuple(payload["rng"]["python"])
    # The replay and its sampler: the first chunks drawn after resume are the ones that the
    # saved replay_rng draws from the first N episode files.
    replay = EpisodeReplay.load(run_dir / "episodes", limit=payload["episode"])
    rng = np.random.default_rng()
    rng.bit_generator.state = payload["rng"]["replay"]
    expected = replay.sample(config.train.batch_size, config.train.chunk_length, rng)
    for name in ("obs", "action", "reward"):
        assert np.array_equal(getattr(captured["chunks"], name), getattr(expected, name)), name


def tensorboard_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def assert_complete(run_dir: Path, reference: Path) -> None:
    """Every episode once, right counters, and the reference run's numbers."""
    metrics = read_metrics(run_dir)
    assert [m["episode"] for m in metrics] == list(range(EPISODES))
    assert [m["env_steps"] for m in metrics] == [STEPS * (i + 1) for i in range(EPISODES)]
    names = sorted(p.name for p in (run_dir / "episodes").iterdir())
    assert names == [f"{i:06d}_{STEPS}.npz" for i in range(EPISODES)]
    latest = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[0])
    assert (latest["episode"], latest["env_steps"]) == (EPISODES, EPISODES * STEPS)
    assert latest["updates"] == (EPISODES - 1) * UPDATES  # all but the seed episode
    # The resumed run logs exactly what the uninterrupted run logged (losses, returns, eval).
    assert stable(metrics) == stable(read_metrics(reference))
    # TensorBoard: the events a killed run logged past its checkpoint are purged.
    returns = tensorboard_scalars(run_dir, "train/return")
    assert [step for step, _ in returns] == [m["env_steps"] for m in metrics]
    assert np.allclose([value for _, value in returns], [m["return"] for m in metrics])
    assert not [path for path in run_dir.rglob("*") if is_temporary_file(path)]


def test_kill_during_update_phase_then_resume(reference, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_killed(run_dir, "update:2:1")  # episode 2, after the first of its 2 updates
    killed = read_metrics(run_dir)
    assert [m["episode"] for m in killed] == [0, 1]
    # Same seed and config in another process: the same first episodes and losses.
    assert stable(killed) == stable(read_metrics(reference))[:2]
    payload = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[0])
    assert payload["episode"] == 2

    captured = resume_via_cli(run_dir, ["train", "--resume", str(run_dir), "--no-progress"],
                              monkeypatch)
    assert_same_state(captured, payload, run_dir, make_config())
    assert_complete(run_dir, reference)
    resumes = [json.loads(line) for line in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert [(r["episode"], r["changes"]) for r in resumes] == [(2, [])]


def test_kill_while_collecting_then_rerun_same_command(reference, tmp_path, monkeypatch):
    # After episode 2's updates, 10 steps into collecting: the half episode is not kept.
    kill_then_rerun(tmp_path / "run", "collect:2:10", [0, 1], reference, monkeypatch)


def kill_then_rerun(run_dir: Path, kill_at: str, logged: list[int], reference: Path,
                    monkeypatch) -> None:
    """SIGKILL a run at `kill_at` while its newest checkpoint covers 2 episodes; check what it
    left (episodes `logged` in metrics and on disk), then run the same command again (no
    --resume): it continues from that checkpoint and ends as the reference run did."""
    run_killed(run_dir, kill_at)
    assert [m["episode"] for m in read_metrics(run_dir)] == logged
    assert len(list((run_dir / "episodes").glob("*.npz"))) == len(logged)
    payload = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[0])
    assert payload["episode"] == 2
    argv = ["train", *ARGS, "--run-dir", str(run_dir), "--no-progress"]
    captured = resume_via_cli(run_dir, argv, monkeypatch)
    assert_same_state(captured, payload, run_dir, make_config())
    assert_complete(run_dir, reference)


def copy_run(reference: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    return run_dir


def test_kill_after_an_episode_is_logged_and_before_its_checkpoint(reference, tmp_path,
                                                                   monkeypatch):
    """A real SIGKILL at that point: episode 2's file and metrics line exist, its checkpoint
    does not; the rerun drops both, collects episode 2 again and logs the reference's numbers."""
    kill_then_rerun(tmp_path / "run", "checkpoint:2:0", [0, 1, 2], reference, monkeypatch)


def test_kill_between_episode_file_and_checkpoint(reference, tmp_path):
    """Episode 2 is on disk and logged, its checkpoint half-written: episode 2 is redone."""
    run_dir = copy_run(reference, tmp_path)
    checkpoints = run_dir / "checkpoints"
    latest = checkpoints / "episode_000003.pt"
    temporary = temporary_path(latest, pid=12345)
    temporary.write_bytes(latest.read_bytes()[:1000])
    latest.unlink()
    lines: list[str] = []
    summary = train(make_config(), run_dir, progress=False, log=lines.append)
    assert summary["resumed_from"] == 2
    assert any("resuming from episode_000002.pt" in line for line in lines)
    assert_complete(run_dir, reference)


def test_truncated_checkpoint_falls_back(reference, tmp_path):
    run_dir = copy_run(reference, tmp_path)
    latest = run_dir / "checkpoints" / "episode_000003.pt"
    latest.write_bytes(latest.read_bytes()[:5000])  # a torn write, as after a disk failure
    lines: list[str] = []
    summary = train(make_config(), run_dir, progress=False, log=lines.append)
    assert summary["resumed_from"] == 2
    text = "\n".join(lines)
    assert f"checkpoint {latest} fails its sha256 checksum (truncated or corrupted)" in text
    assert "trying an older checkpoint" in text
    assert (run_dir / "checkpoints" / "episode_000003.pt.damaged").exists()
    assert_complete(run_dir, reference)


def test_an_unreadable_checkpoint_stops_the_resume_and_changes_nothing(reference, tmp_path,
                                                                       monkeypatch):
    """Permissions or an I/O error are not damage: no fallback, which would drop the episodes
    the newest checkpoint covers, and nothing set aside."""
    run_dir = copy_run(reference, tmp_path)
    newest = list_checkpoints(run_dir / "checkpoints")[0]
    def run_files() -> dict[Path, bytes]:  # but the lock file, which names its last holder
        return {path: path.read_bytes() for path in run_dir.rglob("*")
                if path.is_file() and path.name != LOCK_FILE_NAME}

    files = run_files()
    read_bytes = Path.read_bytes

    def refuse_newest(path: Path) -> bytes:
        if path == newest:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse_newest)
    with pytest.raises(TrainError) as error:
        train(make_config("--episodes", str(EPISODES + 1)), run_dir, progress=False, log=quiet)
    assert f"cannot read checkpoint {newest}: Permission denied" in str(error.value)
    assert "no checkpoint or episode file was set aside" in str(error.value)
    assert "trying an older" not in str(error.value)
    monkeypatch.undo()
    assert run_files() == files and len(files) > 5


def test_checkpoints_without_the_counters_a_resume_needs_are_named(reference, tmp_path, capsys):
    """Checkpoints from an older planet (no `nonfinite_in_a_row`): one line, no traceback."""
    run_dir = copy_run(reference, tmp_path)
    for path in list_checkpoints(run_dir / "checkpoints"):
        payload = load_checkpoint(path)
        del payload["nonfinite_in_a_row"]
        save_checkpoint(path, payload)
    assert cli.main(["train", "--resume", str(run_dir), "--episodes", str(EPISODES + 1)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no usable checkpoint" in error[0], error
    assert "episode_000003.pt lacks nonfinite_in_a_row (written by an older planet)" in error[0]


def test_corrupted_episode_file_falls_back(reference, tmp_path):
    run_dir = copy_run(reference, tmp_path)
    damaged = run_dir / "episodes" / f"000002_{STEPS}.npz"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    lines: list[str] = []
    summary = train(make_config(), run_dir, progress=False, log=lines.append)
    assert summary["resumed_from"] == 2  # checkpoint 3 needs episode 2; checkpoint 2 does not
    text = "\n".join(lines)
    assert f"episode file {damaged} is unreadable, truncated or corrupted" in text
    assert "setting aside unusable checkpoint episode_000003.pt" in text
    assert_complete(run_dir, reference)


def test_corrupted_early_episode_without_fallback_is_refused(reference, tmp_path):
    run_dir = copy_run(reference, tmp_path)
    damaged = run_dir / "episodes" / f"000000_{STEPS}.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(TrainError) as error:
        train(make_config(), run_dir, progress=False, log=quiet)
    message = str(error.value)
    assert f"episode file {damaged} is unreadable" in message
    assert "no usable checkpoint" in message and "Start a new --run-dir" in message


def test_a_stop_between_checkpoints_saves_the_episode_and_resumes_exactly(reference, tmp_path):
    """With checkpoint_interval 3, a stop asked for after episode 1 (as the learning bench's
    clock does) still writes a checkpoint after those 2 episodes, and the resumed run logs what the
    uninterrupted one logged."""
    run_dir = tmp_path / "run"
    config = make_config("--set", "train.checkpoint_interval=3")
    summary = train(config, run_dir, progress=False, log=quiet,
                    on_episode=lambda record, components: record["episode"] == 1)
    assert summary["episodes"] == 2
    assert [path.name for path in list_checkpoints(run_dir / "checkpoints")] == [
        "episode_000002.pt"]
    resumed = train(config, run_dir, progress=False, log=quiet)
    assert resumed["resumed_from"] == 2 and resumed["episodes"] == EPISODES
    assert stable(read_metrics(run_dir)) == stable(read_metrics(reference))


def test_resume_refuses_config_that_changes_model_or_data(reference, tmp_path):
    run_dir = copy_run(reference, tmp_path)
    before = (run_dir / "config.json").read_text()
    config = make_config("--env", "gym:Pendulum-v1", "--set", "model.state_size=16")
    with pytest.raises(TrainError) as error:
        train(config, run_dir, progress=False, log=quiet)
    message = str(error.value)
    assert "cannot resume" in message
    assert "env.name: 'toy:dot' -> 'gym:Pendulum-v1'" in message
    assert "model.state_size: 8 -> 16" in message
    assert "train.episodes" not in message
    assert (run_dir / "config.json").read_text() == before  # nothing was touched
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "episode_000002.pt", "episode_000003.pt"
    ]


def test_resume_checks_the_checkpoints_own_config_not_only_config_json(reference, tmp_path,
                                                                        capsys):
    """`train --resume` takes its config from config.json, so a hand edit there (a batch size)
    must be caught against the config the checkpoint was saved under."""
    run_dir = copy_run(reference, tmp_path)
    saved = json.loads((run_dir / "config.json").read_text())
    saved["train"]["batch_size"] = 8
    (run_dir / "config.json").write_text(json.dumps(saved))
    episodes = sorted(path.name for path in (run_dir / "episodes").iterdir())
    assert cli.main(["train", "--resume", str(run_dir), "--episodes", str(EPISODES + 1)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "cannot resume: the config differs from the one in" in error[0]
    assert "episode_000003.pt" in error[0] and "train.batch_size: 4 -> 8" in error[0]
    assert sorted(path.name for path in (run_dir / "episodes").iterdir()) == episodes
    assert len(episodes) == EPISODES  # nothing collected, nothing dropped


def test_resume_allows_and_records_safe_changes(reference, tmp_path):
    run_dir = copy_run(reference, tmp_path)
    config = make_config("--set", "train.test_interval=5", "--set", "train.image_log_interval=0",
                         "--set", "train.max_episodes_in_memory=2")
    lines: list[str] = []
    summary = train(config, run_dir, progress=False, log=lines.append)
    assert summary["resumed_from"] == EPISODES and summary["last"] == {}  # nothing to collect
    assert "resume: allowed change train.test_interval: 1 -> 5" in lines
    assert json.loads((run_dir / "config.json").read_text())["train"]["test_interval"] == 5
    (resume,) = [json.loads(x) for x in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert resume["changes"] == [
        "train.image_log_interval: 1 -> 0",
        "train.max_episodes_in_memory: 0 -> 2",
        "train.test_interval: 1 -> 5",
    ]
    assert read_metrics(run_dir) == read_metrics(reference)


def test_check_resume_config_lists_every_unsafe_field():
    saved = make_config()
    requested = make_config("--set", "train.batch_size=8", "--set", "train.bit_depth=6",
                            "--episodes", "10")
    with pytest.raises(TrainError, match="train.batch_size: 4 -> 8; train.bit_depth: 5 -> 6"):
        check_resume_config(saved, requested)
    assert check_resume_config(saved, make_config("--episodes", "10")) == [
        "train.episodes: 3 -> 10"
    ]
