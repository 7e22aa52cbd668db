"""One writer per run folder: planet.run_lock, and `planet train` holding it for its whole run."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import quiet

from planet import cli
from planet.config import make_config
from planet.resume import TrainError
from planet.run_lock import LOCK_FILE_NAME, RunLockedError, hold_run_dir, lock_path, read_holder
from planet.train import train


def is_held(run_dir: Path) -> bool:
    """Whether some process holds `run_dir`'s lock now (False without a lock file). It probes
    with a shared lock, which a writer's one try at that moment would fail on: tests only."""
    path = lock_path(run_dir)
    if not path.exists():
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_ARGS = ["--env", "toy:dot", "--preset", "smoke", "--no-progress"]


def test_second_holder_is_refused_with_the_first_ones_details(tmp_path):
    run_dir = tmp_path / "run"
    with hold_run_dir(run_dir, "planet train") as path:
        assert path == run_dir / LOCK_FILE_NAME
        holder = read_holder(run_dir)
        assert holder["pid"] == os.getpid() and holder["command"] == "planet train"
        assert holder["host"] == socket.gethostname()
        assert is_held(run_dir)
        with pytest.raises(RunLockedError) as refused:
            with hold_run_dir(run_dir, "planet evaluate"):
                pass
    message = str(refused.value)
    assert isinstance(refused.value, TrainError)
    assert "\n" not in message
    assert message.startswith(f"run dir {run_dir} is in use by planet train (pid {os.getpid()} "
                              f"on host {socket.gethostname()}, since {holder['since']})")
    assert message.endswith("; wait for it to finish or stop it")
    # Released, and the lock file stays (unlinking a flock'd file races).
    assert not is_held(run_dir) and (run_dir / LOCK_FILE_NAME).exists()
    with hold_run_dir(run_dir, "planet evaluate"):
        assert read_holder(run_dir)["command"] == "planet evaluate"


def test_wait_retries_until_its_time_is_up(tmp_path):
    with hold_run_dir(tmp_path, "planet train"):
        start = time.monotonic()
        with pytest.raises(RunLockedError):
            with hold_run_dir(tmp_path, "planet train", wait=0.5):
                pass
        assert 0.5 <= time.monotonic() - start < 30  # waited, then gave up (loose: busy CI)


def test_a_file_is_not_a_run_dir(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine\n")
    with pytest.raises(TrainError, match=f"^run dir {path} exists and is not a directory$"):
        with hold_run_dir(path, "planet train"):
            pass
    with pytest.raises(TrainError, match=f"^sweep folder {path} exists and is not a directory$"):
        with hold_run_dir(path, "planet sweep", what="sweep folder"):
            pass
    assert path.read_text() == "mine\n"


def test_train_holds_the_lock_for_its_whole_run(tmp_path):
    run_dir = tmp_path / "run"
    seen = []

    def check(record, components):
        seen.append(read_holder(run_dir)["pid"] == os.getpid() and is_held(run_dir))

    config = make_config("smoke", {"env.name": "toy:dot", "train.episodes": 2,
                                   "env.max_episode_steps": 10})
    train(config, run_dir, progress=False, log=quiet, on_episode=check)
    assert seen == [True, True]
    assert not is_held(run_dir)


def test_train_into_a_locked_folder_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with hold_run_dir(run_dir, "planet train"):
        code = cli.main(["train", *TRAIN_ARGS, "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"planet train: error: run dir {run_dir} is in use")
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE_NAME]


def test_a_writer_that_waits_gets_the_folder_once_the_holder_lets_go(tmp_path):
    """The sweep's retries rely on this: a retried run waits for the dying attempt's lock."""
    run_dir = tmp_path / "run"
    held, release = threading.Event(), threading.Event()

    def holder():
        with hold_run_dir(run_dir, "planet train"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        threading.Timer(0.5, release.set).start()
        started = time.monotonic()
        with hold_run_dir(run_dir, "planet train", wait=10) as path:
            waited = time.monotonic() - started
            assert json.loads(Path(path).read_text())["pid"] == os.getpid()
    finally:
        release.set()
        thread.join(10)
    assert 0.4 < waited < 10


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_two_train_processes_on_one_folder_and_a_sigkilled_holder(tmp_path, capsys,
                                                                    monkeypatch):
    """A real `planet train` process holds the folder: a second `planet train` fails at once
    with one line naming it; once the first is SIGKILLed, the folder is free again."""
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "planet", "train", *TRAIN_ARGS, "--episodes", "1000",
         "--run-dir", str(run_dir)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # The holder's pid is written only once it holds the lock (the folder is new). Probing
        # the lock itself here could make the first process's one try fail.
        wait_until(lambda: (read_holder(run_dir) or {}).get("pid") == first.pid, 300,
                   "the first run to hold the lock")
        # Refused before any training: training would fail this test at once.
        import planet.train

        def no_training(*args, **kwargs):
            raise AssertionError("the second train started training")

        monkeypatch.setattr(planet.train, "run_algorithm_1", no_training)
        code = cli.main(["train", *TRAIN_ARGS, "--episodes", "1000", "--run-dir", str(run_dir)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert f"is in use by planet train (pid {first.pid} on host" in err[0]
        assert first.poll() is None  # the first run is untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    with hold_run_dir(run_dir, "planet train", wait=10) as path:
        assert json.loads(Path(path).read_text())["pid"] == os.getpid()
