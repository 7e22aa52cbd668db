"""No command writes over a run's own files; start-up cleanup touches only planet's names;
metrics.jsonl lines are on disk before their checkpoint, and a lost one is reported."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import TINY_OVERRIDES as TINY
from conftest import quiet

from planet import cli
from planet.atomic_files import temporary_path
from planet.checkpoint import list_checkpoints
from planet.config import make_config
from planet.logging import read_metrics
from planet.resume import TrainError
from planet.run_lock import hold_run_dir
from planet.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

def one_line_error(argv: list[str], capsys) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (code, err)
    assert err[0].startswith(f"planet {argv[0]}: error: ")
    return err[0]


def fake_run(tmp_path):
    """A folder with a run's config.json (nothing is loaded before the refusals tested here)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(make_config("smoke", TINY).to_json() + "\n")
    return run_dir


def test_predict_out_next_to_config_json_is_refused(tmp_path, capsys):
    run_dir = fake_run(tmp_path)
    before = (run_dir / "config.json").read_text()
    line = one_line_error(["predict", str(run_dir), "--out", str(run_dir / "config.mp4")], capsys)
    assert f"--out would write {run_dir / 'config.json'}, which belongs to the run" in line
    assert (run_dir / "config.json").read_text() == before
    line = one_line_error(["predict", str(run_dir), "--out",
                           str(run_dir / "episodes" / "000000_10.mp4")], capsys)
    assert "which belongs to the run" in line


@pytest.mark.parametrize(
    ("option", "name"),
    [("--json", "metrics.jsonl"), ("--json", "config.json"), ("--video", "checkpoints/a.gif"),
     ("--json", "tb/eval.json")],
)
def test_evaluate_outputs_over_run_files_are_refused(tmp_path, capsys, option, name):
    run_dir = fake_run(tmp_path)
    line = one_line_error(["evaluate", str(run_dir), option, str(run_dir / name)], capsys)
    assert f"{option} would write {run_dir / name}, which belongs to the run in" in line


def test_plot_out_inside_a_runs_own_folder_is_refused(tmp_path, capsys):
    run_dir = fake_run(tmp_path)
    line = one_line_error(["plot", str(run_dir), "--out", str(run_dir / "tb" / "c.png")], capsys)
    assert f"--out would write {run_dir / 'tb' / 'c.png'}, which belongs to the run" in line
    assert not (run_dir / "tb").exists()


def test_evaluate_into_a_run_being_trained_is_refused_unless_it_writes_elsewhere(
    tiny_run, tmp_path, capsys
):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    elsewhere = tmp_path / "eval.json"
    with hold_run_dir(run_dir, "planet train"):
        line = one_line_error(["evaluate", str(run_dir), "--episodes", "1"], capsys)
        assert f"is in use by planet train (pid {os.getpid()}" in line
        assert line.endswith(", or write elsewhere with --json")
        code = cli.main(["evaluate", str(run_dir), "--episodes", "1", "--json", str(elsewhere)])
    assert code == 0 and elsewhere.exists()
    assert not (run_dir / "eval.json").exists()


def test_cleanup_removes_only_planets_temporary_files(tiny_run, tmp_path):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    planet_temporary = temporary_path(run_dir / "checkpoints" / "episode_000003.pt", pid=99)
    planet_temporary.write_bytes(b"half a checkpoint")
    users = [run_dir / ".notes.txt.tmp1", run_dir / "checkpoints" / ".model.tmp5",
             run_dir / ".config.json.tmp42"]
    for path in users:
        path.write_text("mine\n")
    lines: list[str] = []
    train(make_config("smoke", {**TINY, "train.episodes": 3}), run_dir, progress=False,
          log=lines.append)
    assert not planet_temporary.exists()
    assert all(path.read_text() == "mine\n" for path in users)
    assert (f"warning: {users[1]} is not a file planet writes; left alone (not loaded, not "
            "removed)") in lines


def test_a_users_checkpoint_file_is_left_alone_and_reported(tiny_run, tmp_path):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    best = run_dir / "checkpoints" / "episode_best.pt"
    best.write_bytes(b"my own weights")
    assert list_checkpoints(run_dir / "checkpoints")[0].name == "episode_000002.pt"
    lines: list[str] = []
    summary = train(make_config("smoke", {**TINY, "train.episodes": 3}), run_dir,
                    progress=False, log=lines.append)
    assert summary["resumed_from"] == 2
    assert best.read_bytes() == b"my own weights"
    assert not list((run_dir / "checkpoints").glob("*.damaged"))
    assert any(f"warning: {best} is not a file planet writes" in line for line in lines)


def test_training_into_a_folder_that_is_not_a_run_warns_and_keeps_its_files(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    lines: list[str] = []
    train(make_config("smoke", {**TINY, "train.episodes": 1}), folder, progress=False,
          log=lines.append)
    assert (folder / "notes.txt").read_text() == "mine\n"
    assert (f"warning: run dir {folder} is not a planet run folder and is not empty (it holds "
            "notes.txt); training writes its files beside them and leaves them alone") in lines


def test_a_config_json_that_is_not_planets_is_never_overwritten(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"theme": "dark"}\n')
    with pytest.raises(TrainError, match="is not a planet config .*planet does not overwrite"):
        train(make_config("smoke", TINY), folder, progress=False, log=quiet)
    assert (folder / "config.json").read_text() == '{"theme": "dark"}\n'


# --- metrics.jsonl: on disk before its checkpoint; an unreadable line is reported and rebuilt ---
def test_each_metrics_line_is_fsynced_before_the_checkpoint_that_counts_it(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    train(make_config("smoke", TINY), tmp_path / "run", progress=False, log=quiet)
    order = [name for name in synced if name == "metrics.jsonl" or ".episode_0" in name]
    assert order == ["metrics.jsonl", ".episode_000001.pt.planet-tmp." + str(os.getpid()),
                     "metrics.jsonl", ".episode_000002.pt.planet-tmp." + str(os.getpid())]


def test_resume_rebuilds_an_unreadable_metrics_line_and_says_so(tiny_run, tmp_path):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    original = json.loads(lines[0])
    metrics.write_text("\n".join(["{\"episode\": 0, \"env_st\x00garbled", *lines[1:]]) + "\n")
    log: list[str] = []
    train(make_config("smoke", {**TINY, "train.episodes": 3}), run_dir, progress=False,
          log=log.append)
    assert (f"warning: {metrics} line 1 (episode 0) cannot be read; rebuilt from the episode "
            "file (return and steps; its losses and timings are lost)") in log
    records = read_metrics(run_dir)
    assert [record["episode"] for record in records] == [0, 1, 2]
    rebuilt = records[0]
    assert rebuilt["rebuilt"] is True
    for key in ("env_steps", "agent_steps", "return", "random_policy"):
        assert rebuilt[key] == original[key], key


def test_a_missing_metrics_line_without_a_rebuilder_is_reported(tmp_path):
    from planet.logging import Logger

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"episode": 0}\n{"episo\n{"episode": 2}\n')
    warnings: list[str] = []
    Logger(run_dir, start_episode=3, tensorboard=False, warn=warnings.append)
    assert warnings == [f"warning: {run_dir / 'metrics.jsonl'} line 2 (episode 1) cannot be "
                        "read; it cannot be rebuilt here, so the run has no metrics for it"]
    assert [r["episode"] for r in read_metrics(run_dir)] == [0, 2]
