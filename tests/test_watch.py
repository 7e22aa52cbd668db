"""`planet watch` draws real frames in a window under Xvfb, and fails cleanly without one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import torch
from test_evaluate import assert_one_line_error, run_cli

from planet.checkpoint import load_checkpoint, save_checkpoint
from planet.runs import load_run


def read_xwd(path) -> np.ndarray:
    """The screen Xvfb keeps in an XWD file with -fbdir: (H, W, 3) uint8 RGB (24-bit visual)."""
    raw = open(path, "rb").read()
    header = np.frombuffer(raw[:100], ">u4")
    header_size, width, height = int(header[0]), int(header[4]), int(header[5])
    byte_order, bits_per_pixel, bytes_per_line = int(header[7]), int(header[11]), int(header[12])
    assert bits_per_pixel == 32, bits_per_pixel
    offset = header_size + int(header[19]) * 12  # header, then ncolors 12-byte colour entries
    rows = np.frombuffer(raw, np.uint8, bytes_per_line * height, offset).reshape(height, -1)
    pixels = rows[:, : width * 4].reshape(height, width, 4)
    return pixels[..., [2, 1, 0]] if byte_order == 0 else pixels[..., [1, 2, 3]]


@contextmanager
def xvfb(fbdir):
    """An Xvfb server keeping its screen in fbdir/Xvfb_screen0; yields the DISPLAY value."""
    assert shutil.which("Xvfb"), "Xvfb is missing: apt-get install -y xvfb (./setup.sh test)"
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-fbdir",
         str(fbdir), "-nolisten", "tcp"], pass_fds=(write_end,),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        yield ":" + os.read(read_end, 16).decode().strip()
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(timeout=10)


def test_watch_draws_frames_under_xvfb(smoke_run, tmp_path):
    watch = None
    with xvfb(tmp_path) as display:
        try:
            watch = subprocess.Popen(
                [sys.executable, "-m", "planet", "watch", str(smoke_run), "--max-steps", "30",
                 "--fps", "5", "--scale", "4"], env={**os.environ, "DISPLAY": display},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            best = None
            deadline = time.time() + 240
            while watch.poll() is None and time.time() < deadline:
                time.sleep(0.5)
                screen = read_xwd(tmp_path / "Xvfb_screen0")
                lit = np.argwhere(screen.max(axis=-1) > 0)
                if len(lit) and (best is None or len(lit) > best[0]):
                    best = (len(lit), lit.min(0), lit.max(0), screen)
            out, err = watch.communicate(timeout=60)
        finally:
            if watch is not None and watch.poll() is None:  # past the deadline: none left
                watch.kill()
    assert watch.returncode == 0, err
    assert "drew 30 frames" in out
    assert best is not None, "the screen stayed black"
    _, top_left, bottom_right, screen = best
    # The window: caption (36) + 64 * 4 high, 2 * 64 * 4 + 8 wide, with real, varied content.
    assert tuple(bottom_right - top_left + 1) == (36 + 256, 2 * 256 + 8)
    window = screen[top_left[0] : bottom_right[0] + 1, top_left[1] : bottom_right[1] + 1]
    real_frame, reconstruction = window[36:, :256], window[36:, 256 + 8:]
    assert real_frame.std() > 10 and len(np.unique(real_frame.reshape(-1, 3), axis=0)) > 50
    # The model's side is drawn too: not blank, and not a copy of the real frame.
    assert reconstruction.std() > 5 and len(np.unique(reconstruction.reshape(-1, 3), axis=0)) > 50
    assert not np.array_equal(reconstruction, real_frame)


def test_watch_without_display_fails_cleanly(smoke_run, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, _, err = run_cli(capsys, "watch", smoke_run)
    assert_one_line_error(code, err, "no display", "planet evaluate")


def test_watch_of_a_missing_run_dir_fails_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":12345")
    code, _, err = run_cli(capsys, "watch", tmp_path / "missing")
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "watch", tmp_path / "missing", "--scale", 0)
    assert_one_line_error(code, err, "--scale must be at least 1")
    code, _, err = run_cli(capsys, "watch", tmp_path / "missing", "--seed", -1)
    assert_one_line_error(code, err, "--seed must be in 0 .. 2**32 - 1, got -1")


def copy_of_run(smoke_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    return run_dir


def weights(run) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in run.model.state_dict().items()}


def assert_same_weights(run, expected: dict[str, torch.Tensor]) -> None:
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_follow_loads_a_newer_checkpoint_once(smoke_run):
    """`watch --follow` starts each episode from the newest checkpoint: a run loaded from an
    older one moves to the newest, with its weights, in eval mode, and stays there while
    nothing newer comes."""
    run = load_run(smoke_run, smoke_run / "checkpoints" / "episode_000002.pt")
    assert run.episodes == 2
    run.model.train()
    assert run.load_newer_checkpoint() is True
    assert run.checkpoint.name == "episode_000003.pt" and run.episodes == 3
    newest = load_checkpoint(run.checkpoint)
    assert run.env_steps == newest["env_steps"] > 0
    assert_same_weights(run, newest["model"])
    assert not run.model.training
    assert run.load_newer_checkpoint() is False


def test_follow_keeps_the_loaded_weights_when_the_newest_file_is_damaged(smoke_run, tmp_path):
    run_dir = copy_of_run(smoke_run, tmp_path)
    run = load_run(run_dir, run_dir / "checkpoints" / "episode_000002.pt")
    before = weights(run)
    newest = run_dir / "checkpoints" / "episode_000003.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # caught mid-copy, or damaged
    assert run.load_newer_checkpoint() is False
    assert run.episodes == 2 and run.checkpoint.name == "episode_000002.pt"
    assert_same_weights(run, before)


def test_follow_refuses_another_models_checkpoint_without_loading_any_of_it(smoke_run, tmp_path):
    """A newest checkpoint of another model: refused by its saved config, or, without one, by
    its shapes, before any tensor is copied (load_state_dict copies the tensors that fit, then
    raises)."""
    run_dir = copy_of_run(smoke_run, tmp_path)
    run = load_run(run_dir, run_dir / "checkpoints" / "episode_000002.pt")
    before = weights(run)
    payload = load_checkpoint(run_dir / "checkpoints" / "episode_000003.pt")
    payload["config"]["model"]["state_size"] += 1
    save_checkpoint(run_dir / "checkpoints" / "episode_000004.pt", payload)
    assert run.load_newer_checkpoint() is False
    name = next(name for name in payload["model"] if name.endswith(".weight"))
    payload["model"][name] = torch.zeros(3, 3)  # one tensor of another shape, the rest fit
    del payload["config"]
    save_checkpoint(run_dir / "checkpoints" / "episode_000005.pt", payload)
    assert run.load_newer_checkpoint() is False
    assert run.episodes == 2
    assert_same_weights(run, before)


def test_follow_counts_an_old_checkpoints_episodes_from_its_name(smoke_run, tmp_path):
    """A checkpoint saved without its episode count is loaded once, not before every episode."""
    run_dir = copy_of_run(smoke_run, tmp_path)
    run = load_run(run_dir, run_dir / "checkpoints" / "episode_000002.pt")
    payload = load_checkpoint(run_dir / "checkpoints" / "episode_000003.pt")
    save_checkpoint(run_dir / "checkpoints" / "episode_000004.pt", {"model": payload["model"]})
    assert run.load_newer_checkpoint() is True
    assert run.episodes == 4 and run.env_steps == 0
    assert run.load_newer_checkpoint() is False


def test_watch_follow_loads_a_checkpoint_written_while_it_runs(smoke_run, tmp_path, capsys,
                                                                monkeypatch):
    """The command: a checkpoint that appears while the window is open is loaded before the
    next episode and said so. --follow with --checkpoint is refused."""
    monkeypatch.setenv("DISPLAY", ":12345")
    code, _, err = run_cli(capsys, "watch", smoke_run, "--follow", "--checkpoint",
                           smoke_run / "checkpoints" / "episode_000002.pt")
    assert_one_line_error(code, err, "--follow", "not both")

    run_dir = copy_of_run(smoke_run, tmp_path)
    checkpoints = run_dir / "checkpoints"
    with xvfb(tmp_path) as display:
        watch = subprocess.Popen(
            [sys.executable, "-m", "planet", "watch", str(run_dir), "--follow", "--episodes",
             "3", "--fps", "20", "--scale", "1"], env={**os.environ, "DISPLAY": display},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            seen, line = "", "-"
            while line and "episode 1:" not in line:  # until the first episode has ended
                line = watch.stdout.readline()
                seen += line
            # A new checkpoint, as training writes it (a full file under a temporary name, then
            # a rename). The second episode lasts at least 125 steps at 20 frames per second,
            # so the third one must start from it.
            (checkpoints / "partial").write_bytes(
                (checkpoints / "episode_000003.pt").read_bytes())
            (checkpoints / "partial").rename(checkpoints / "episode_000004.pt")
            out, err = watch.communicate(timeout=240)
            out = seen + out
        finally:
            if watch.poll() is None:
                watch.kill()
    assert watch.returncode == 0, err
    assert out.startswith(f"watching {checkpoints / 'episode_000003.pt'}"), out
    assert f"loaded {checkpoints / 'episode_000004.pt'}" in out, out
    assert out.index("episode 1:") < out.index("loaded") < out.index("episode 3:"), out
