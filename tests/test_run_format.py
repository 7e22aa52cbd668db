"""A run folder written by an earlier planet still resumes, evaluates and predicts.

tests/data/run-format-1 was written by the code at commit 1a411cd (before the training loop was
split into planet.components, planet.episodes and planet.resume), with
    planet train --env toy:dot --preset smoke --episodes 2 --seed 5 --set train.seed_episodes=1
        --set env.max_episode_steps=12 --set train.test_interval=1 --set train.image_log_interval=0
        and a tiny model (model.cnn_depth=4, embedding_size=32, belief_size=8, state_size=4,
        hidden_size=8, reward_hidden_size=8; train.chunk_length=8, batch_size=2,
        collect_interval=2; planner.horizon=3, candidates=8, top_candidates=2)
so that it stays small. Every test works on a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from planet import cli

DATA = Path(__file__).parent / "data" / "run-format-1"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(DATA, run_dir)
    return run_dir


def episodes_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["episode"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_an_old_run_resumes_where_it_stopped(old_run: Path):
    assert episodes_logged(old_run) == [0, 1]
    assert cli.main(["train", "--resume", str(old_run), "--episodes", "3", "--no-progress"]) == 0
    assert episodes_logged(old_run) == [0, 1, 2]
    (resume,) = [json.loads(line) for line in (old_run / "resumes.jsonl").read_text().splitlines()]
    assert resume["checkpoint"] == "episode_000002.pt" and resume["episode"] == 2
    assert (old_run / "checkpoints" / "episode_000003.pt").is_file()


def test_an_old_run_evaluates_and_predicts(old_run: Path, tmp_path: Path, capsys):
    eval_json = tmp_path / "eval.json"
    assert cli.main(["evaluate", str(old_run), "--episodes", "2", "--no-progress",
                     "--json", str(eval_json)]) == 0
    report = json.loads(eval_json.read_text())
    assert len(report["returns"]) == 2 and report["episodes_trained"] == 2
    out = tmp_path / "predict.mp4"
    assert cli.main(["predict", str(old_run), "--context", "2", "--horizon", "4",
                     "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
