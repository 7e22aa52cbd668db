"""`planet bench-learning`, short: a wall-clock budget, evaluations, JSON and PNG on disk."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from planet.cli import main
from planet.learning_bench import default_out

# One thread (conftest.one_thread) and 200-step episodes keep an episode to a second or two on a
# busy 2-core machine; when the evaluations fall is tested on a made-up clock below.
pytestmark = pytest.mark.usefixtures("one_thread")
EPISODE_STEPS = 200


def test_short_learning_benchmark_writes_json_and_curve(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench-learning", "--preset", "smoke", "--env", "cartpole-swingup",
                 "--minutes", "0.15", "--eval-every", "0.05", "--eval-episodes", "2",
                 "--out", str(out), "--no-progress", "--set", "train.collect_interval=4",
                 "--set", f"env.max_episode_steps={EPISODE_STEPS}"])
    assert code == 0
    summary = json.loads((out / "learning.json").read_text())
    points = summary["points"]
    assert len(points) >= 1  # how many fit the budget depends on the machine's speed
    minutes = [p["train_minutes"] for p in points]
    assert minutes == sorted(minutes) and minutes[-1] >= 0.15
    assert all(len(p["eval_returns"]) == 2 for p in points)
    assert np.isfinite([r for p in points for r in p["eval_returns"]]).all()
    steps = [p["env_steps"] for p in points]
    assert steps == sorted(steps) and steps[-1] % EPISODE_STEPS == 0  # whole episodes
    assert summary["references"]["table1"] == 821
    assert summary["preset"] == "smoke" and summary["config"]["train"]["collect_interval"] == 4
    assert summary["config"]["env"]["max_episode_steps"] == EPISODE_STEPS
    assert summary["command"].endswith(
        f"--preset smoke --seed 0 --minutes 0.15 --eval-every 0.05 --eval-episodes 2 --out {out} "
        f"--set train.collect_interval=4 --set env.max_episode_steps={EPISODE_STEPS}")
    image = imageio.imread(out / "learning.png")
    assert image.shape[:2] == (420, 1100)
    assert "eval return" in capsys.readouterr().out
    assert (out / "run" / "metrics.jsonl").exists()
    # The same --out again would resume the run and restart the curve: refused, untouched.
    before = (out / "learning.json").read_text()
    assert main(["bench-learning", "--preset", "smoke", "--out", str(out)]) == 2
    assert "holds a learning benchmark already" in capsys.readouterr().err
    assert (out / "learning.json").read_text() == before


def test_bad_budgets_and_too_many_eval_episodes_are_one_line_errors(tmp_path, capsys):
    base = ["bench-learning", "--preset", "smoke", "--out", str(tmp_path / "b")]
    cases = {("--minutes", "0"): "must be positive",
             ("--eval-episodes", "101"): "--eval-episodes must be at most 100"}
    for args, expected in cases.items():
        assert main([*base, *args]) == 2, args
        error = capsys.readouterr().err
        assert expected in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_the_default_folder_is_one_folder_for_any_env_name_and_presets():
    assert default_out("gym:dm_control/cartpole-swingup-v0", "cpu,fast", 3).parts == (
        "runs", "learning", "gym_dm_control_cartpole-swingup-v0-cpu+fast-s3")
    assert default_out("cartpole-swingup", "smoke", 0).name == "cartpole-swingup-smoke-s0"


def test_evaluations_fall_on_multiples_of_the_interval_in_training_time():
    """TimedEvaluations on made-up episodes: every 10 s of training time, and at the end of a
    35 s budget; the evaluations' own time (3 s each here) is not training time."""
    from planet.learning_bench import TimedEvaluations

    clock = {"spent": 0.0}
    timed = TimedEvaluations(config=None, budget_s=35, interval_s=10, episodes=2)

    def evaluate(record, components, train_seconds):
        timed.eval_seconds += 3.0  # what evaluating costs; the real one measures it
        return {"train_seconds": train_seconds, "episode": record["episode"]}

    timed.evaluate = evaluate
    stops = []
    for episode in range(20):
        clock["spent"] += 4.0  # each episode trains for 4 s of wall time
        wall_time = clock["spent"] + timed.eval_seconds
        stops.append(timed({"episode": episode, "wall_time": wall_time}, None))
        if stops[-1]:
            break
    # Training seconds 4, 8, 12 (past 10: evaluate), ..., 20 (evaluate), ..., 32 (past 30),
    # 36 (past the 35 s budget: evaluate and stop).
    assert [point["train_seconds"] for point in timed.points] == [12.0, 20.0, 32.0, 36.0]
    assert stops == [False] * 8 + [True]
