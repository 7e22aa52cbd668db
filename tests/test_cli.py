"""The `planet` command as a user runs it: a subprocess, real files, real messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from planet.config import field_docs


def planet(*args: str, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "planet", *args], capture_output=True, text=True, cwd=cwd,
        timeout=timeout,
    )


def test_smoke_training_run_writes_everything(tmp_path):
    run_dir = tmp_path / "run"
    result = planet("train", "--preset", "smoke", "--episodes", "3", "--env", "cartpole-swingup",
                    "--run-dir", str(run_dir), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "done: 3 episodes, 3000 env steps" in result.stdout
    assert f"next: planet evaluate {run_dir} --episodes 10" in result.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"]["name"] == "cartpole-swingup" and config["preset"] == "smoke"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in records] == [0, 1, 2]
    assert [r["env_steps"] for r in records] == [1000, 2000, 3000]
    for record in records:
        assert {"return", "wall_time", "episode", "env_steps"} <= record.keys()
    assert "loss_total" in records[2] and "eval_return" in records[2]  # trained and tested
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "episode_000003.pt").stat().st_size > 10_000
    assert len(list((run_dir / "episodes").glob("*_125.npz"))) == 3


def test_default_preset_is_auto_and_says_why(tmp_path):
    # One random seed episode, no update: just the preset choice, its first line and config.json.
    run_dir = tmp_path / "run"
    result = planet("train", "--episodes", "1", "--device", "cpu", "--run-dir", str(run_dir),
                    "--no-progress")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first == "preset cpu (auto: --device cpu, so the preset tuned for small CPUs)"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["preset"] == "cpu" and config["model"]["cnn_depth"] == 16
    assert config["preset_reason"].startswith("auto: --device cpu")
    forced = planet("train", "--episodes", "1", "--device", "cpu", "--preset", "paper",
                    "--run-dir", str(tmp_path / "paper"), "--no-progress")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[0] == "preset paper"
    assert json.loads((tmp_path / "paper" / "config.json").read_text())["model"]["cnn_depth"] == 32


def test_train_help_lists_every_field_with_its_default():
    result = planet("train", "--help")
    assert result.returncode == 0
    for name, _, default, _ in field_docs():
        assert f"{name} (" in result.stdout and f"default {default!r}" in result.stdout, name
    # Each section is introduced once, in order, and its fields follow it.
    headers = [line.split(":")[0].strip() for line in result.stdout.splitlines()
               if line.startswith(" ") and not line.startswith("  ") and ":" in line
               and line.split(":")[0].strip() in ("env", "model", "train", "planner", "machine",
                                                  "top level")]
    assert headers == ["env", "model", "train", "planner", "machine", "top level"]
    machine_part = result.stdout.split("\n machine: ")[1].split("\n top level: ")[0]
    assert "machine.compile_planner (bool" in machine_part and "train." not in machine_part


@pytest.mark.parametrize(
    "args,message",
    [
        (["--env", "cartpol-swingup"], "unknown dm_control task 'cartpol-swingup'; valid forms"),
        (["--preset", "fast"], "unknown preset 'fast'; valid presets: auto, paper, smoke, cpu"),
        (["--preset", ","], "--preset names no preset (','); valid presets: auto, paper"),
        (["--resume", "elsewhere"], "--resume elsewhere continues that run in its own folder"),
        (["--episodes", "-2"], "--episodes must be >= 0, got -2"),
        (["--set", "train.batch_size=ten"], "train.batch_size must be int, got 'ten'"),
        (["--set", "planner.horizn=3"], "did you mean planner.horizon"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    result = planet("train", "--run-dir", str(tmp_path / "run"), "--no-progress", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_presets_prints_each_preset_with_its_overrides(capsys):
    from planet import cli
    from planet.config import PRESETS

    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("auto: ")
    for name, overrides in PRESETS.items():
        assert f"\n{name}: " in out, name
        for key, value in overrides.items():
            assert f"    {key} = {value!r}" in out, key
    assert "    train.batch_size = 4" in out  # smoke's, as a user reads it


def default_run_dir(*argv: str):
    from planet import cli

    return cli.resolve_train_config(cli.build_parser().parse_args(["train", *argv]))[1]


def test_default_run_folders_never_mix_two_configurations():
    from pathlib import Path

    base = ("--env", "cartpole-swingup", "--preset", "cpu")
    assert default_run_dir(*base) == Path("runs/cartpole-swingup/cpu-s0")
    assert default_run_dir(*base, "--seed", "1") == Path("runs/cartpole-swingup/cpu-s1")
    assert default_run_dir(*base, "--symbolic") == Path("runs/cartpole-swingup/cpu-symbolic-s0")
    small = default_run_dir(*base, "--set", "train.batch_size=16")
    smaller = default_run_dir(*base, "--set", "train.batch_size=8")
    assert small != smaller and small.parent == Path("runs/cartpole-swingup")
    assert small.name.startswith("cpu-") and small.name.endswith("-s0")
    # Fields a resume may change keep the folder: more episodes continue the same run.
    assert default_run_dir(*base, "--episodes", "7", "--set", "train.test_interval=3") == Path(
        "runs/cartpole-swingup/cpu-s0")


def test_ctrl_c_in_train_names_the_checkpoint_and_the_resume_command(tmp_path, monkeypatch,
                                                                       capsys):
    import planet.train
    from planet import cli

    run_dir = tmp_path / "run"
    argv = ["train", "--preset", "smoke", "--env", "toy:dot", "--episodes", "1",
            "--run-dir", str(run_dir), "--no-progress"]
    assert cli.main(argv) == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(planet.train, "train", interrupted)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # main sets its own on Ctrl-C
    assert cli.main([*argv[:-3], "--episodes", "2", "--run-dir", str(run_dir)]) == 130
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"planet train: interrupted; the last checkpoint is {run_dir}/checkpoints/"
                     f"episode_000001.pt. Continue with: planet train --resume {run_dir}"]
