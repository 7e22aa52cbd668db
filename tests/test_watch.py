"""`planet watch` draws real frames in a window under Xvfb, and fails cleanly without one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
from test_evaluate import assert_one_line_error, run_cli


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


def test_watch_draws_frames_under_xvfb(smoke_run, tmp_path):
    assert shutil.which("Xvfb"), "Xvfb is missing: apt-get install -y xvfb (./setup.sh test)"
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-fbdir",
         str(tmp_path), "-nolisten", "tcp"], pass_fds=(write_end,),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    watch = None
    try:
        display = os.read(read_end, 16).decode().strip()
        env = {**os.environ, "DISPLAY": f":{display}"}
        watch = subprocess.Popen(
            [sys.executable, "-m", "planet", "watch", str(smoke_run), "--max-steps", "30",
             "--follow", "--fps", "5", "--scale", "4"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
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
        if watch is not None and watch.poll() is None:  # past the deadline: no process left
            watch.kill()
        xvfb.terminate()
        xvfb.wait(timeout=10)
    assert watch.returncode == 0, err
    assert "drew 30 frames" in out
    assert best is not None, "the screen stayed black"
    _, top_left, bottom_right, screen = best
    # The window: caption (36) + 64 * 4 high, 2 * 64 * 4 + 8 wide, with real, varied content.
    assert tuple(bottom_right - top_left + 1) == (36 + 256, 2 * 256 + 8)
    window = screen[top_left[0] : bottom_right[0] + 1, top_left[1] : bottom_right[1] + 1]
    real_frame = window[36:, :256]
    assert real_frame.std() > 10 and len(np.unique(real_frame.reshape(-1, 3), axis=0)) > 50


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


def test_follow_loads_a_newer_checkpoint_once(smoke_run):
    """`watch --follow` starts each episode from the newest checkpoint: a run loaded from an
    older one moves to the newest, with its weights, and stays there while nothing newer
    comes."""
    from planet.checkpoint import load_checkpoint
    from planet.runs import load_run

    run = load_run(smoke_run, smoke_run / "checkpoints" / "episode_000002.pt")
    assert run.episodes == 2
    assert run.load_newer_checkpoint() is True
    assert run.checkpoint.name == "episode_000003.pt" and run.episodes == 3
    newest = load_checkpoint(run.checkpoint)
    assert run.env_steps == newest["env_steps"] > 0
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, newest["model"][name]), name
    assert not run.model.training
    assert run.load_newer_checkpoint() is False


def test_follow_keeps_the_loaded_weights_when_the_newest_file_is_damaged(smoke_run, tmp_path):
    import shutil

    from planet.runs import load_run

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    run = load_run(run_dir, run_dir / "checkpoints" / "episode_000002.pt")
    before = {name: tensor.clone() for name, tensor in run.model.state_dict().items()}
    newest = run_dir / "checkpoints" / "episode_000003.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # caught mid-copy, or damaged
    assert run.load_newer_checkpoint() is False
    assert run.episodes == 2 and run.checkpoint.name == "episode_000002.pt"
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
