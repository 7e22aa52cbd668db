"""Bad input anywhere is one clear line on stderr and a non-zero exit, never a traceback.

Most cases call `planet.cli.main` in-process (capsys); one runs `python -m planet` to check the
real exit status and stderr of the entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from planet import cli
from planet.config import make_config
from planet.logging import MetricsError, read_metrics

# Gymnasium warns before our own check rejects the env; the warning is not what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")


class NoRgbEnv(gym.Env):
    """A Gymnasium env that cannot render frames."""

    metadata = {"render_modes": []}
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode


class UnboundedActionEnv(NoRgbEnv):
    """Renders frames, but its actions have no bounds for the planner to search within."""

    metadata = {"render_modes": ["rgb_array"]}
    action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def render(self):
        return np.zeros((64, 64, 3), np.uint8)


gym.register("PlanetTestNoRgb-v0", entry_point=NoRgbEnv)
gym.register("PlanetTestUnbounded-v0", entry_point=UnboundedActionEnv)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and the single stderr line of `planet ARGV`."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"planet {argv[0]}: error: "), err
    return code, err[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "nope:thing"], "unknown environment 'nope:thing'; valid forms:"),
        (["--env", "cartpole-nope"], "unknown dm_control task 'cartpole-nope'"),
        (["--env", "toy:square"], "unknown toy env 'square'"),
        (["--env", "gym:NoSuchEnv-v9"], "cannot make Gymnasium env 'NoSuchEnv-v9'"),
        (["--env", "gym:PlanetTestNoRgb-v0"],
         "Gymnasium env 'PlanetTestNoRgb-v0' cannot render rgb_array frames"),
        (["--env", "gym:CartPole-v1"],
         "action space is Discrete(2) (it must be a bounded gymnasium.spaces.Box)"),
        (["--env", "gym:PlanetTestUnbounded-v0"], "is unbounded; PlaNet needs finite bounds"),
        (["--set", "train.batch_size=abc"], "train.batch_size must be int, got 'abc'"),
        (["--set", "machine.deterministic=maybe"], "machine.deterministic must be true or false"),
        (["--set", "train.batchsize=4"],
         "unknown config field 'train.batchsize' (did you mean train.batch_size?)"),
        (["--set", "train.batch_size"], "--set expects section.field=value"),
        (["--set", "train.chunk_length=0"], "train.chunk_length must be positive, got 0"),
        (["--preset", "tiny"], "unknown preset 'tiny'"),
        (["--episodes", "-1"], "--episodes must be >= 0, got -1"),
        (["--set", "train.learning_rate=nan"], "train.learning_rate must be a finite number"),
        (["--set", "env.image_size=32"], "env.image_size must be 64 for pixel observations"),
        (["--seed", "-1"], "seed must be >= 0, got -1"),
        (["--set", "model.min_stddev=-5"], "model.min_stddev must be positive, got -5.0"),
        # cartpole at repeat 8: 1000 env steps are 125 agent steps, 126 rows.
        (["--set", "train.chunk_length=200"],
         "train.chunk_length=200 is longer than any episode of cartpole-swingup can be: 126 rows"),
    ],
)
def test_bad_train_input_is_one_line(args, expected, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, line = run_cli(["train", "--preset", "smoke", *args, "--run-dir", str(run_dir)],
                         capsys)
    assert code == 2
    assert expected in line
    assert not run_dir.exists()  # nothing is written before the input is checked


@pytest.mark.parametrize("command", ["train", "bench-learning"])
def test_cuda_asked_for_without_a_gpu_is_one_line(command, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    where = ["--run-dir", str(out)] if command == "train" else ["--out", str(out)]
    code, line = run_cli([command, "--preset", "smoke", "--device", "cuda", *where], capsys)
    assert code == 2
    assert "--device cuda was asked for, but" in line
    assert line.endswith("; use --device cpu or auto")
    assert not out.exists()


def test_wrong_option_type_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--episodes", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "planet train: error: argument --episodes: invalid int value: 'many'"


def test_run_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("not a run\n")
    code, line = run_cli(["train", "--env", "toy:dot", "--run-dir", str(path)], capsys)
    assert code == 2 and f"run dir {path} exists and is not a directory" in line
    code, line = run_cli(["train", "--resume", str(path)], capsys)
    assert code == 2 and "no config.json there, nothing to resume" in line


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    code, line = run_cli(["train", "--resume", str(tmp_path / "missing")], capsys)
    assert code == 2 and "nothing to resume" in line


def make_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(
        make_config("smoke", {"env.name": "toy:dot"}).to_json() + "\n"
    )
    return run_dir


def test_unreadable_checkpoint(tmp_path, capsys):
    run_dir = make_run_dir(tmp_path)
    checkpoint = run_dir / "checkpoints" / "episode_000001.pt"
    checkpoint.write_bytes(b"garbage")
    code, line = run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)
    assert code == 2
    assert f"cannot resume {run_dir}: no usable checkpoint" in line
    assert f"checkpoint {checkpoint} is not a planet checkpoint or is truncated" in line
    assert "Start a new --run-dir" in line


def test_damaged_config_json(tmp_path, capsys):
    run_dir = make_run_dir(tmp_path)
    (run_dir / "config.json").write_text('{"train": {"batch_size": ')
    code, line = run_cli(["train", "--resume", str(run_dir)], capsys)
    assert code == 2 and f"cannot read {run_dir / 'config.json'}" in line
    (run_dir / "config.json").write_text('{"train": {"batch_size": "large"}}')
    code, line = run_cli(["train", "--resume", str(run_dir)], capsys)
    assert code == 2 and "train.batch_size must be int, got 'large'" in line
    (run_dir / "config.json").write_text("[]")  # valid JSON, not a config
    code, line = run_cli(["train", "--resume", str(run_dir)], capsys)
    assert code == 2 and f"cannot read {run_dir / 'config.json'}" in line


def test_entry_point_exit_status_and_single_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "planet", "train", "--env", "gym:CartPole-v1",
         "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "planet train: error: gym:CartPole-v1: PlaNet plans continuous actions, but the action "
        "space is Discrete(2) (it must be a bounded gymnasium.spaces.Box)"
    ]


def test_checkpoints_without_config_json_are_not_overwritten(tmp_path, capsys):
    run_dir = make_run_dir(tmp_path)
    (run_dir / "config.json").unlink()
    checkpoint = run_dir / "checkpoints" / "episode_000001.pt"
    checkpoint.write_bytes(b"weights")
    code, line = run_cli(["train", "--preset", "smoke", "--env", "toy:dot",
                          "--run-dir", str(run_dir)], capsys)
    assert code == 2 and "holds checkpoints but no config.json" in line
    assert checkpoint.read_bytes() == b"weights"


# --- the remaining tracebacks: each is one line now -------------------------------------------
def copy_run(run_dir, tmp_path):
    import shutil

    return shutil.copytree(run_dir, tmp_path / "copy")


def test_unknown_mujoco_gl_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MUJOCO_GL", "nonsense")
    run_dir = tmp_path / "run"
    code, line = run_cli(["train", "--preset", "smoke", "--env", "cartpole-swingup",
                          "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert "MUJOCO_GL='nonsense' is not a rendering backend MuJoCo can use" in line
    assert not run_dir.exists()


def test_resume_after_config_json_was_edited_to_another_model_size(tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    config_path = run_dir / "config.json"
    saved = json.loads(config_path.read_text())
    saved["model"]["belief_size"] = 64
    config_path.write_text(json.dumps(saved))
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    code, line = run_cli(["train", "--resume", str(run_dir), "--episodes", "3",
                          "--no-progress"], capsys)
    assert code == 2
    assert "comes from an incompatible config" in line and "model.belief_size 32 vs 64" in line
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before  # none set aside


def test_plot_skips_a_half_line_at_the_end_of_metrics(tiny_run, tmp_path, capsys):
    run_dir = copy_run(tiny_run, tmp_path)
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"episode": 2, "env_st')
    out = tmp_path / "curve.png"
    code = cli.main(["plot", str(run_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and out.exists()
    assert err == [f"planet plot: warning: {run_dir / 'metrics.jsonl'} line 3 is not a complete "
                   "JSON object (cut short?); skipped"]
    with pytest.raises(MetricsError, match="line 3 is not a complete JSON object"):
        read_metrics(run_dir)


class HalfBuilt:
    """What Ctrl-C leaves of dm_control's rendering context when it lands inside __init__."""

    def __del__(self):
        raise AttributeError("'HalfBuilt' object has no attribute '_ptr'")


def test_ctrl_c_while_the_parser_is_built_is_one_line(monkeypatch, capsys):
    """One line, and what the interrupt left half built reports nothing as it is freed (Python
    would print "Exception ignored in ..." and a traceback after the line)."""
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)  # restored after the test

    def interrupted():
        half_built = HalfBuilt()  # noqa: F841 (freed with the interrupt's traceback)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["train"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["planet: interrupted"]
    assert reported == []


class RunsCode:
    """What a malicious checkpoint would hold: unpickling it calls os.system, which would
    create `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_unsafe_checkpoint_is_refused_without_pytorchs_advice(tmp_path, capsys):
    import hashlib
    import io

    from planet.checkpoint import MAGIC

    run_dir = make_run_dir(tmp_path)
    buffer = io.BytesIO()
    marker = tmp_path / "the-payload-ran"
    torch.save({"model": RunsCode(marker), "episode": 1}, buffer)
    data = buffer.getvalue()
    checkpoint = run_dir / "checkpoints" / "episode_000001.pt"
    checkpoint.write_bytes(MAGIC + hashlib.sha256(data).digest() + data)
    code, line = run_cli(["evaluate", str(run_dir), "--checkpoint", str(checkpoint)], capsys)
    assert code == 2
    assert f"checkpoint {checkpoint} holds code or objects (posix.system) that planet never " \
           "writes, so it was refused unread; do not load files from untrusted sources" in line
    assert "weights_only" not in line and "succeed" not in line
    assert not marker.exists()  # refused unread: the payload never ran


def test_no_usable_checkpoint_error_says_each_thing_once(tmp_path, capsys):
    run_dir = make_run_dir(tmp_path)
    for episode in (1, 2):
        (run_dir / "checkpoints" / f"episode_00000{episode}.pt").write_bytes(b"garbage")
    code, line = run_cli(["train", "--resume", str(run_dir), "--no-progress"], capsys)
    assert code == 2
    assert line == (
        f"planet train: error: cannot resume {run_dir}: no usable checkpoint (checkpoint "
        f"{run_dir / 'checkpoints' / 'episode_000002.pt'} is not a planet checkpoint or is "
        f"truncated (7 bytes); checkpoint {run_dir / 'checkpoints' / 'episode_000001.pt'} is "
        "not a planet checkpoint or is truncated (7 bytes)). Start a new --run-dir"
    )
