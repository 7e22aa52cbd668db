"""planet sweep and planet report: real Ray on loopback, smoke-sized runs.

Every Ray test starts the sweep as a `python -m planet sweep` subprocess, which starts its own
local Ray instance and shuts it down, so a test can SIGKILL the driver the way a user's crash
would. Runs use the smoke preset with short episodes (about 10 s each on 2 cores).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from planet import cli
from planet.errors import UsageError
from planet.report import (
    against_random,
    curve,
    draw_figure,
    group_runs,
    load_runs,
    summarise,
    value_at,
)
from planet.run_files import SWEEP_ATTEMPTS_FILE, SWEEP_LOG_FILE
from planet.run_lock import hold_run_dir
from planet.sweep import (
    RAY_TOKEN_SETUP_LOGGER,
    LiveView,
    RunStatus,
    append_attempt,
    check_a_run_fits,
    episodes_done,
    quiet_default_token_auth,
    running_or_pending,
)

SMALL = [
    "--preset", "smoke", "--no-progress",
    "--set", "train.seed_episodes=1", "--set", "train.collect_interval=2",
    "--set", "env.max_episode_steps=96", "--set", "train.test_interval=1",
    "--set", "train.image_log_interval=0",
]
TIMEOUT = 900  # seconds: a hang guard, not a speed check; ample on a loaded 2-core machine


def sweep_command(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "planet.cli", "sweep", "--out", str(out), *SMALL, *args]


# Ray's authentication as it is by default (unset), whatever the machine running the tests set;
# a test that wants token authentication passes it in `env`.
RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def run_sweep(out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key not in RAY_AUTH_VARIABLES}
    return subprocess.run(sweep_command(out, *args), capture_output=True, text=True,
                          timeout=TIMEOUT, env={**base, **(env or {})})


def episodes_logged(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["episode"] for line in lines]


def attempts(run_dir: Path, event: str = "start") -> list[dict]:
    lines = (run_dir / SWEEP_ATTEMPTS_FILE).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """2 tasks x 2 seeds, 3 episodes each, finished."""
    out = tmp_path_factory.mktemp("sweep") / "two-by-two"
    done = run_sweep(out, "--envs", "toy:dot,cartpole-swingup", "--seeds", "0,1",
                     "--episodes", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    (out.parent / "driver-output.txt").write_text(done.stdout + done.stderr)
    return out


def test_sweep_trains_every_point_once(finished_sweep: Path):
    names = ["toy_dot/s0", "toy_dot/s1", "cartpole-swingup/s0", "cartpole-swingup/s1"]
    saved = json.loads((finished_sweep / "sweep.json").read_text())
    assert sorted(saved["runs"]) == sorted(names)
    for name in names:
        run_dir = finished_sweep / name
        config = json.loads((run_dir / "config.json").read_text())
        assert config["seed"] == int(name[-1]) and config["train"]["episodes"] == 3
        assert episodes_logged(run_dir) == [0, 1, 2]
        assert episodes_done(run_dir) == 3
        assert len(attempts(run_dir)) == 1
        start = attempts(run_dir)[0]
        assert start["torch_threads"] == 1  # --cpus-per-run default
        log = (run_dir / SWEEP_LOG_FILE).read_text()  # the run's own log
        assert "training" in log and log.splitlines()[-1].startswith("done: 3 episodes, ")
        assert "not a planet run folder" not in log  # train.log and the attempts are the sweep's


def test_local_ray_instance_starts_without_the_token_auth_notice(finished_sweep: Path):
    """With RAY_AUTH_MODE unset (run_sweep unsets it), Ray enables token authentication for a
    new local instance and says so at every start; the sweep keeps the choice and drops the
    notice."""
    output = (finished_sweep.parent / "driver-output.txt").read_text()
    assert "started a local Ray instance" in output
    assert "Token authentication" not in output and "Traceback" not in output, output


def test_the_token_auth_filter_catches_the_installed_rays_own_notice():
    """The notice comes from the module the filter listens to, in the words it looks for: the
    absence check above could not tell a working filter from a Ray that moved its notice."""
    import importlib

    setup = importlib.import_module(RAY_TOKEN_SETUP_LOGGER)  # the module is also the logger name
    logger = logging.getLogger(RAY_TOKEN_SETUP_LOGGER)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # Ray's loggers do not propagate to pytest's caplog
    logger.addHandler(handler)
    try:
        setup._warn_token_auth_enabled()
        logger.addFilter(quiet_default_token_auth)
        setup._warn_token_auth_enabled()
    finally:
        logger.removeFilter(quiet_default_token_auth)
        logger.removeHandler(handler)
    (record,) = records  # the first call only
    assert record.name == RAY_TOKEN_SETUP_LOGGER
    assert record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def test_the_token_auth_filter_drops_only_the_notice_that_auth_is_on(caplog):
    """Ray's other authentication warnings (auth disabled, a missing token) still show."""
    logger = logging.getLogger(RAY_TOKEN_SETUP_LOGGER)
    logger.addFilter(quiet_default_token_auth)
    try:
        with caplog.at_level(logging.WARNING, logger=RAY_TOKEN_SETUP_LOGGER):
            logger.warning("Token authentication is enabled for this Ray cluster. Set "
                           "RAY_AUTH_MODE=disabled to opt out.")
            logger.warning("Token authentication is disabled for this Ray cluster. Anyone "
                           "with network access to the cluster can run arbitrary code.")
    finally:
        logger.removeFilter(quiet_default_token_auth)
    assert [record.getMessage()[:36] for record in caplog.records] == [
        "Token authentication is disabled for"]


def test_sweep_rerun_of_a_finished_sweep_starts_nothing(finished_sweep: Path):
    again = run_sweep(finished_sweep, "--envs", "toy:dot,cartpole-swingup", "--seeds", "0,1",
                      "--episodes", "3")
    assert again.returncode == 0, again.stderr
    assert "4 finished earlier, 0 to run" in again.stdout
    assert "Ray" not in again.stdout  # no Ray instance for nothing to do
    for name in ["toy_dot/s0", "cartpole-swingup/s1"]:
        assert len(attempts(finished_sweep / name)) == 1


def test_report_numbers_equal_the_runs_metrics(finished_sweep: Path, tmp_path: Path):
    # Each run: episode 0 random, evaluations after episodes 1 and 2; ask at both of them, for
    # both tasks (their episodes differ in length, so each task's steps are its own).
    steps_of = {}
    for task, folder in (("toy:dot", "toy_dot"), ("cartpole-swingup", "cartpole-swingup")):
        records = [json.loads(line) for line in
                   (finished_sweep / folder / "s0" / "metrics.jsonl").read_text().splitlines()]
        steps_of[task] = [r["env_steps"] for r in records if "eval_return" in r]
    asked = ",".join(map(str, sorted({*steps_of["toy:dot"], *steps_of["cartpole-swingup"]})))
    out = tmp_path / "report"
    code = cli.main(["report", str(finished_sweep), "--at-env-steps", asked, "--out", str(out)])
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {row["task"]: row for row in report["groups"]}
    assert sorted(rows) == ["cartpole-swingup", "toy:dot"]
    for task, folder in (("toy:dot", "toy_dot"), ("cartpole-swingup", "cartpole-swingup")):
        random_returns = [json.loads(line)["return"] for seed in (0, 1) for line in
                          (finished_sweep / f"{folder}/s{seed}/metrics.jsonl").read_text()
                          .splitlines() if json.loads(line).get("random_policy")]
        assert len(random_returns) == 2  # one seed episode per run
        assert rows[task]["random_policy"]["mean"] == pytest.approx(np.mean(random_returns))
        assert rows[task]["random_policy"]["std"] == pytest.approx(np.std(random_returns))
        for steps in map(int, asked.split(",")):
            expected = []
            for seed in (0, 1):
                records = [json.loads(line) for line in (finished_sweep / f"{folder}/s{seed}" /
                           "metrics.jsonl").read_text().splitlines()]
                if max(r["env_steps"] for r in records) < steps:
                    continue
                evals = [r["eval_return"] for r in records
                         if "eval_return" in r and r["env_steps"] <= steps]
                if evals:
                    expected.append(evals[-1])
            cell = rows[task]["at"][str(steps)]
            assert cell["seeds"] == len(expected)
            if steps in steps_of[task]:
                assert len(expected) == 2, (task, steps)  # both seeds evaluated there
            if expected:
                assert cell["mean"] == pytest.approx(np.mean(expected))
                assert cell["std"] == pytest.approx(np.std(expected))
    assert out.with_suffix(".png").stat().st_size > 10_000
    text = out.with_suffix(".md").read_text()
    assert "| toy:dot |" in text and "| cartpole-swingup |" in text
    # Both commands, as run: the sweep's from its sweep.json, named after its --out folder.
    sweep = json.loads((finished_sweep / "sweep.json").read_text())["command"]
    assert report["commands"]["sweep"] == sweep
    assert report["commands"]["report"] == [
        "planet", "report", str(finished_sweep), "--at-env-steps", asked, "--out", str(out)]
    assert text.startswith(f"# Report: {finished_sweep.name}\n")
    assert shlex.join(sweep) in text and shlex.join(report["commands"]["report"]) in text


def test_driver_killed_midway_then_rerun_finishes_each_episode_once(tmp_path: Path):
    out = tmp_path / "killed"
    args = ["--envs", "toy:dot", "--seeds", "0,1", "--episodes", "5", "--parallel", "1"]
    driver = subprocess.Popen(sweep_command(out, *args), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    second = out / "toy_dot" / "s1"
    deadline = time.time() + TIMEOUT
    try:  # SIGKILL the driver once the second run (parallel 1: after the first) has 2 episodes
        while episodes_done(second) < 2:
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.2)
    finally:
        # The driver, the local Ray it started and the run's worker at once, as a crash would:
        # a worker notices its raylet's death only after a while, and could finish the run.
        os.killpg(driver.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(attempts(second)[-1]["pid"], signal.SIGKILL)
        driver.wait()
    assert episodes_done(second) < 5
    rerun = run_sweep(out, *args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 finished earlier, 1 to run or resume" in rerun.stdout
    for name in ("s0", "s1"):
        assert episodes_logged(out / "toy_dot" / name) == [0, 1, 2, 3, 4]
    assert len(attempts(out / "toy_dot" / "s0")) == 1  # finished: not run again
    resumes = [json.loads(line) for line in (second / "resumes.jsonl").read_text().splitlines()]
    assert resumes and resumes[-1]["episode"] >= 2


def test_a_run_too_big_for_every_node_is_refused_not_waited_for(tmp_path: Path):
    """Ray would hold a task that fits no node for ever: the sweep says so and stops."""
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}},
             {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    check_a_run_fits(nodes, 8, 1)  # the second node takes it
    check_a_run_fits(nodes, 2, 0)
    with pytest.raises(UsageError, match=r"^--cpus-per-run 4 --gpus-per-run 2: no Ray node has "
                       r"that much \(the largest has 8 CPUs and 1 GPUs\)"):
        check_a_run_fits(nodes, 4, 2)  # the dead node would have
    with pytest.raises(UsageError, match=r"^--cpus-per-run 9: .*\(the largest has 8 CPUs"):
        check_a_run_fits(nodes, 9, 0)
    # The command: one line, exit 2, at once (not the 900 s hang guard), no run started.
    out = tmp_path / "too-big"
    result = run_sweep(out, "--envs", "toy:dot", "--episodes", "1", "--cpus-per-run", "64")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--cpus-per-run 64: no Ray node has that much" in result.stderr
    assert not (out / "toy_dot").exists()


def test_crashed_worker_is_retried_and_a_failing_run_is_reported(tmp_path: Path):
    """s0's worker dies once (retried, resumes), s1 always raises a RuntimeError (retried, then
    reported), s2 raises an error meant for the user (reported without a retry)."""
    out = tmp_path / "faults"
    faults = "toy_dot/s0=kill-first-attempt;toy_dot/s1=always-fail;toy_dot/s2=user-error"
    # Two CPUs per run where the machine has two (one on a 1-CPU machine): each run gets that
    # many torch threads.
    cpus = min(2, len(os.sched_getaffinity(0)))
    result = run_sweep(out, "--envs", "toy:dot", "--seeds", "0,1,2", "--episodes", "3",
                       "--retries", "1", "--cpus-per-run", str(cpus),
                       env={"PLANET_TEST_SWEEP_FAULT": faults})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 3 runs done, 2 failed" in result.stdout
    failed = [line for line in result.stdout.splitlines() if line.strip().startswith("failed:")]
    assert len(failed) == 2, result.stdout
    assert "toy_dot/s1" in failed[0] and "RuntimeError: injected failure" in failed[0]
    assert "toy_dot/s2" in failed[1] and "TrainError: injected user error" in failed[1]
    assert [end["outcome"] for end in attempts(out / "toy_dot" / "s2", "end")] == ["error"]
    assert "planet train: error: injected user error" in (out / "toy_dot" / "s2" / SWEEP_LOG_FILE
                                                           ).read_text()
    killed = out / "toy_dot" / "s0"
    assert [a["attempt"] for a in attempts(killed)] == [1, 2]
    assert episodes_logged(killed) == [0, 1, 2]
    resumes = [json.loads(line) for line in (killed / "resumes.jsonl").read_text().splitlines()]
    assert resumes[0]["episode"] == 1  # the retry resumed after the first checkpoint
    assert attempts(killed)[0]["torch_threads"] == cpus  # Ray alone would leave one thread
    ends = attempts(out / "toy_dot" / "s1", "end")
    assert [end["outcome"] for end in ends] == ["error", "error"]  # the first try and one retry


def test_another_grid_or_config_into_the_same_folder_is_refused(tmp_path: Path, capsys):
    out = tmp_path / "grid"
    # --episodes 0: every run is finished before it starts, so no Ray is needed here.
    base = ["sweep", "--out", str(out), *SMALL, "--envs", "toy:dot", "--seeds", "0",
            "--episodes", "0"]
    assert cli.main([*base, "--grid", "planner.candidates=16,32"]) == 0
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["command"] == ["planet", *base, "--grid", "planner.candidates=16,32"]
    assert sorted(saved["runs"]) == ["toy_dot/planner.candidates=16/s0",
                                     "toy_dot/planner.candidates=32/s0"]
    capsys.readouterr()
    assert cli.main([*base, "--grid", "planner.candidates=16,64"]) == 2
    error = capsys.readouterr().err
    assert "another grid or config" in error and len(error.strip().splitlines()) == 1
    assert "runs not in this command: toy_dot/planner.candidates=32/s0" in error
    assert "runs new in this command: toy_dot/planner.candidates=64/s0" in error
    assert cli.main([*base, "--grid", "planner.candidates=16,32",
                     "--set", "planner.horizon=3"]) == 2
    assert "planner.horizon: 6 -> 3 (2 of 2 runs)" in capsys.readouterr().err
    # A field that may change on resume (train.test_interval, train.episodes) is allowed.
    assert cli.main([*base, "--grid", "planner.candidates=16,32",
                     "--set", "train.test_interval=2"]) == 0
    resaved = json.loads((out / "sweep.json").read_text())["runs"]
    assert {run["config"]["train"]["test_interval"] for run in resaved.values()} == {2}


def test_bad_sweep_input_is_one_line(tmp_path: Path, capsys):
    base = ["sweep", "--out", str(tmp_path / "bad"), "--episodes", "0"]
    cases = {
        ("--envs", "toy:dot", "--grid", "planner.candidatez=1,2"): "did you mean",
        ("--envs", "toy:dot", "--grid", "seed=1,2"): "--grid seed: use --seeds",
        ("--envs", "toy:dot", "--set", "seed=7"): "--set seed: use --seeds",
        ("--envs", "toy:dot", "--set", "train.episodes=7"): "--set train.episodes: use --episodes",
        ("--envs", "toy:dot", "--seeds", "0,x"): "--seeds must be integers",
        ("--envs", "nope:task"): "unknown environment",
        ("--envs", "toy:dot", "--cpus-per-run", "0"): "--cpus-per-run",
        # Names that parse but that no env answers to: refused before sweep.json is written,
        # which a corrected command could not have replaced.
        ("--envs", "toy:dot,cartpole-swingupp"): "unknown dm_control task 'cartpole-swingupp'",
        ("--envs", "cartpole-swingup,walker-run,toy:dott"): "unknown toy env 'dott'",
        ("--envs", "gym:Pendulum-v9"): "unknown Gymnasium env 'Pendulum-v9'",
        ("--envs", "toy:dot,toy:dot"): "--envs lists a value twice: toy:dot,toy:dot",
        ("--envs", "toy:dot", "--seeds", ","): "--seeds is empty",
        ("--envs", "toy:dot", "--grid", "planner.candidates"): "--grid expects section.field=V1",
        ("--envs", "toy:dot", "--grid", "planner.candidates=1", "--grid",
         "planner.candidates=2"): "--grid names planner.candidates twice",
    }
    for args, expected in cases.items():
        assert cli.main([*base, *args]) == 2, args
        error = capsys.readouterr().err
        assert expected in error and len(error.strip().splitlines()) == 1, error
        assert not (tmp_path / "bad").exists(), args


def test_a_second_driver_on_one_sweep_folder_is_refused(tmp_path: Path, capsys):
    out = tmp_path / "busy"
    with hold_run_dir(out, "planet sweep"):
        code = cli.main(["sweep", "--out", str(out), *SMALL, "--envs", "toy:dot", "--seeds", "0",
                         "--episodes", "0"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1, error
    assert f"sweep folder {out} is in use by planet sweep (pid {os.getpid()} on host" in error[0]
    assert not (out / "sweep.json").exists()


def write_run(folder: Path, task: str, episodes: int, evals: dict[int, float], steps: int):
    """A run folder with a config and metrics: one line per 1000-step episode up to `steps`;
    episodes 0 and 1 act at random and return 2 and 4."""
    from planet.config import make_config

    folder.mkdir(parents=True)
    make_config("smoke", {"env.name": task, "train.episodes": episodes}).save(
        folder / "config.json")
    with open(folder / "metrics.jsonl", "w") as handle:
        for episode in range(steps // 1000):
            record = {"episode": episode, "env_steps": (episode + 1) * 1000, "return": 1.0,
                      "wall_time": 60.0 * (episode + 1)}
            if episode < 2:
                record.update({"random_policy": True, "return": 2.0 * (episode + 1)})
            if (episode + 1) * 1000 in evals:
                record["eval_return"] = evals[(episode + 1) * 1000]
            handle.write(json.dumps(record) + "\n")
        handle.write('{"episode": 99, "env_st')  # a line cut short by a kill is skipped


def test_report_takes_the_last_evaluation_at_or_before_and_marks_unfinished_runs(tmp_path):
    write_run(tmp_path / "a", "walker-walk", 10, {2000: 10.0, 4000: 30.0, 6000: 50.0}, 10_000)
    write_run(tmp_path / "b", "walker-walk", 10, {2000: 20.0, 4000: 40.0}, 5_000)
    runs = load_runs(tmp_path)
    assert [run.unfinished for run in runs] == [False, True]
    assert value_at(runs[0], 5000) == (30.0, 4000)
    assert value_at(runs[1], 6000) is None  # not reached
    summary = summarise(group_runs(runs), [5000, 10_000, 100_000])
    (row,) = summary["groups"]
    assert row["at"]["5000"]["mean"] == 35.0 and row["at"]["5000"]["std"] == 5.0
    assert row["at"]["10000"] == {"mean": 50.0, "std": 0.0, "seeds": 1, "returns": {"a": 50.0},
                                  "eval_env_steps": {"a": 6000}, "not_reached": ["b"],
                                  "no_evaluation": [],
                                  "wall_minutes": 10.0,
                                  "vs_random": {"mean_margin": 47.0, "lowest_margin": 47.0,
                                                "bar": 4.0, "seeds_above_bar": 1, "seeds": 1}}
    assert row["at"]["5000"]["wall_minutes"] == 5.0  # both runs took 5 minutes to 5000 steps
    # Against random (mean 3, std 1, so the bar is 4): margins of the mean 35 and of seed b's 30.
    assert row["at"]["5000"]["vs_random"] == {"mean_margin": 32.0, "lowest_margin": 27.0,
                                              "bar": 4.0, "seeds_above_bar": 2, "seeds": 2}
    assert row["at"]["100000"]["vs_random"] is None  # no seed there yet
    assert row["unfinished"] == {"b": 5000}
    assert row["random_policy"] == {"mean": 3.0, "std": 1.0, "episodes": 4}
    assert row["references"]["100000"] == {"PlaNet (CURL)": 224, "PlaNet (DrQ)": 125,
                                           "Dreamer (CURL)": 277}
    assert cli.main(["report", str(tmp_path), "--at-env-steps", "5000,100000"]) == 0
    text = (tmp_path / "report.md").read_text()
    # Both runs are past 5k, so that value is final (no *), though b is unfinished; no published
    # figure at 5k.
    assert "| walker-walk | 35 ± 5 (2) | 5 | 3 ± 1 (4) |\n" in text
    assert "| walker-walk | not reached * |  | 3 ± 1 (4) | 224 | 125 | 277 |" in text
    assert "b (at 5,000 steps)" in text


def test_report_cell_without_an_evaluation_yet_says_so(tmp_path):
    # Past 5000 steps, but its first evaluation came at 6000 (a long test_interval).
    write_run(tmp_path / "a", "walker-walk", 10, {6000: 50.0}, 10_000)
    write_run(tmp_path / "b", "walker-walk", 20, {}, 3000)
    (row,) = summarise(group_runs(load_runs(tmp_path)), [5000])["groups"]
    assert row["at"]["5000"]["no_evaluation"] == ["a"]
    assert row["at"]["5000"]["not_reached"] == ["b"]
    assert cli.main(["report", str(tmp_path), "--at-env-steps", "5000"]) == 0
    assert "| walker-walk | no evaluation yet * |" in (tmp_path / "report.md").read_text()


def test_report_takes_each_runs_length_from_the_sweeps_plan(tmp_path):
    """A sweep extended from 10 to 20 episodes: a run that finished 10 and has not been
    restarted still has 10 in its config.json, and is not finished."""
    from planet.config import make_config

    write_run(tmp_path / "walker-walk" / "s0", "walker-walk", 10, {10_000: 50.0}, 10_000)
    planned = make_config("smoke", {"env.name": "walker-walk", "train.episodes": 20})
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"command": ["planet", "sweep"], "runs": {"walker-walk/s0": {
            "grid": {}, "config": planned.to_dict()}}}))
    (run,) = load_runs(tmp_path)
    assert (run.episodes, run.target_episodes, run.unfinished) == (10, 20, True)
    (tmp_path / "sweep.json").write_text('{"runs": ["walker-walk/s0"]}')
    assert cli.main(["report", str(tmp_path)]) == 2  # one line, not a traceback


def test_report_without_a_sweep_tells_presets_and_set_fields_apart(tmp_path):
    """`planet report runs/`: runs of one task made with other presets or --set values are
    separate rows, not seeds of one mean; seeds and resumable fields do not split them."""
    from planet.config import make_config

    def run(name, preset, seed, **sets):
        folder = tmp_path / "walker-walk" / name
        write_run(folder, "walker-walk", 10, {10_000: 10.0 * (seed + 1)}, 10_000)
        make_config(preset, {"env.name": "walker-walk", "seed": seed, "train.episodes": 10,
                             **sets}).save(folder / "config.json")

    run("cpu-s0", "cpu", 0)
    run("cpu-s1", "cpu", 1, **{"train.test_interval": 3})  # resumable: still a seed
    run("cpu-big-s0", "cpu", 0, **{"planner.candidates": 300})
    run("paper-s0", "paper", 0)
    labels = {run.name: run.grid for run in load_runs(tmp_path)}
    assert labels == {
        "walker-walk/cpu-s0": "preset=cpu,planner.candidates=100",
        "walker-walk/cpu-s1": "preset=cpu,planner.candidates=100",
        "walker-walk/cpu-big-s0": "preset=cpu,planner.candidates=300",
        "walker-walk/paper-s0": "preset=paper,planner.candidates=1000"}
    groups = group_runs(load_runs(tmp_path))
    assert sorted(len(group.runs) for group in groups) == [1, 1, 2]
    # One task's runs that agree get no label; another task does not split them.
    shutil.rmtree(tmp_path / "walker-walk" / "cpu-big-s0")
    shutil.rmtree(tmp_path / "walker-walk" / "paper-s0")
    write_run(tmp_path / "finger" / "s0", "finger-spin", 10, {10_000: 5.0}, 10_000)
    assert {run.grid for run in load_runs(tmp_path)} == {""}


def test_bad_report_input_is_one_line(tmp_path, capsys):
    write_run(tmp_path / "runs" / "a", "walker-walk", 10, {10_000: 5.0}, 10_000)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("")
    runs = str(tmp_path / "runs")
    cases = {
        (runs, "--at-env-steps", "10k"): "--at-env-steps must be integers, got '10k'",
        (runs, "--at-env-steps", "0,5000"): "--at-env-steps must be positive integers",
        (str(tmp_path / "a-file"),): "a-file is not a folder",
        (str(tmp_path / "empty"),): "empty holds no runs (no sweep.json and no config.json",
    }
    for args, expected in cases.items():
        assert cli.main(["report", *args]) == 2, args
        error = capsys.readouterr().err
        assert expected in error and len(error.strip().splitlines()) == 1, error
    assert not list((tmp_path / "empty").iterdir())  # nothing written for a refused report


def test_report_out_must_name_a_file(tmp_path, capsys):
    write_run(tmp_path / "a", "walker-walk", 10, {10_000: 5.0}, 10_000)
    assert cli.main(["report", str(tmp_path), "--out", "."]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--out takes a path without suffix" in error[0], error


def test_report_mean_over_tasks_row_has_ours_random_and_published_means(tmp_path):
    # Two finished tasks with one seed each; the 100k references over just these two tasks:
    # PlaNet (CURL) (224 + 136) / 2 = 180, PlaNet (DrQ) (125 + 95) / 2 = 110, Dreamer (CURL)
    # (277 + 341) / 2 = 309. Random: both runs' seed episodes return 2 and 4, a mean of 3.
    write_run(tmp_path / "w", "walker-walk", 100, {100_000: 50.0}, 100_000)
    write_run(tmp_path / "f", "finger-spin", 100, {100_000: 150.0}, 100_000)
    assert cli.main(["report", str(tmp_path), "--at-env-steps", "100000"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| **mean over tasks** | **100** |  | 3 | 180 | 110 | 309 |" in text
    assert "## Against a random policy at 100,000 env steps" in text
    assert "| walker-walk | 50 | 3 ± 1 (2) | +47 | +47 | 1 of 1 (bar 4) |" in text
    # With a task still short of the step count there is no mean over tasks.
    write_run(tmp_path / "c", "cheetah-run", 100, {50_000: 10.0}, 50_000)
    assert cli.main(["report", str(tmp_path), "--at-env-steps", "100000"]) == 0
    assert "mean over tasks" not in (tmp_path / "report.md").read_text()


def test_report_means_over_tasks_only_for_labels_every_task_has(tmp_path):
    # runs/ with two walker configs (labelled by the field they differ in) and one finger run
    # (no label): no label covers both tasks, so no mean over tasks; one that did would be the
    # mean of walker alone.
    write_run(tmp_path / "w", "walker-walk", 100, {100_000: 50.0}, 100_000)
    write_run(tmp_path / "f", "finger-spin", 100, {100_000: 150.0}, 100_000)
    write_run(tmp_path / "w2", "walker-walk", 100, {100_000: 70.0}, 100_000)
    config = json.loads((tmp_path / "w2" / "config.json").read_text())
    config["planner"]["candidates"] = 300
    (tmp_path / "w2" / "config.json").write_text(json.dumps(config))
    assert cli.main(["report", str(tmp_path), "--at-env-steps", "100000"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| walker-walk [planner.candidates=300] | 70 ± 0 (1) |" in text, text
    assert "mean over tasks" not in text, text


def test_report_stars_only_values_that_unfinished_runs_will_still_change(tmp_path):
    write_run(tmp_path / "w0", "walker-walk", 100, {50_000: 40.0, 100_000: 50.0}, 100_000)
    write_run(tmp_path / "w1", "walker-walk", 100, {50_000: 60.0}, 60_000)  # unfinished
    write_run(tmp_path / "f0", "finger-spin", 100, {50_000: 10.0, 100_000: 30.0}, 100_000)
    assert cli.main(["report", str(tmp_path), "--at-env-steps", "50000,100000"]) == 0
    at_50k, at_100k = (tmp_path / "report.md").read_text().split("## At 100,000 env steps")
    assert "| walker-walk | 50 ± 10 (2) |" in at_50k  # w1 is past 50k: final
    assert "| **mean over tasks** | **30** |" in at_50k
    assert "| walker-walk | 50 ± 0 (1) * |" in at_100k  # w1 will add to it
    assert "| **mean over tasks** | **40** * |" in at_100k


def test_against_random_counts_the_seeds_above_the_random_mean_plus_one_std():
    random = {"mean": 3.0, "std": 1.0, "episodes": 15}
    assert against_random(np.array([10.0, 3.5, 49.5]), random) == {
        "mean_margin": 18.0, "lowest_margin": 0.5, "bar": 4.0, "seeds_above_bar": 2, "seeds": 3}
    assert against_random(np.array([]), random) is None
    assert against_random(np.array([1.0]), {"mean": None, "std": None, "episodes": 0}) is None


def test_report_mean_curve_starts_where_every_seed_has_evaluated(tmp_path):
    # b evaluates first at 4k (as with another test_interval): the mean starts there.
    write_run(tmp_path / "a", "walker-walk", 10, {2000: 10.0, 4000: 30.0, 6000: 50.0}, 10_000)
    write_run(tmp_path / "b", "walker-walk", 10, {4000: 20.0, 8000: 40.0}, 10_000)
    steps, mean, low, high = curve(load_runs(tmp_path))
    assert list(steps) == [4000, 6000, 8000]
    assert list(mean) == [25.0, 35.0, 45.0] and list(low) == [20.0, 20.0, 40.0]
    assert list(high) == [30.0, 50.0, 50.0]


def test_report_figure_panels_share_the_tables_step_axis(tmp_path):
    import matplotlib.pyplot as plt

    write_run(tmp_path / "w", "walker-walk", 100, {25_000: 50.0, 50_000: 70.0}, 50_000)
    write_run(tmp_path / "w1", "walker-walk", 100, {25_000: 30.0}, 30_000)  # a seed behind
    write_run(tmp_path / "f", "finger-spin", 100, {}, 3_000)  # no evaluation yet
    fig = draw_figure(group_runs(load_runs(tmp_path)), [25_000, 50_000, 75_000, 100_000])
    try:
        panels = {ax.get_title(): ax for ax in fig.axes}
        walker, finger = panels["walker-walk"], panels["finger-spin"]
        for ax in (walker, finger):  # both to the last step count, ticked at the table's
            assert ax.get_xlim() == pytest.approx((0, 104_000))
            assert list(ax.get_xticks()) == [0, 25_000, 50_000, 75_000, 100_000]
        fig.canvas.draw()
        assert [t.get_text() for t in walker.get_xticklabels()] == [
            "0", "25k", "50k", "75k", "100k"]
        assert "no evaluation yet" in [t.get_text() for t in finger.texts]
        # walker: each seed thin as far as it has gone; the mean only up to 30k, which both
        # seeds have reached, so it never turns into one seed's curve; references, random 3.
        seeds = [line for line in walker.get_lines() if line.get_linewidth() < 1]
        assert [list(line.get_xdata()) for line in seeds] == [[25_000, 50_000], [25_000]]
        assert [list(line.get_ydata()) for line in seeds] == [[50.0, 70.0], [30.0]]
        (mean,) = [line for line in walker.get_lines() if line.get_label().startswith("this")]
        assert mean.get_label() == "this sweep: mean of 2 seeds, 2 not finished"
        assert list(mean.get_xdata()) == [25_000] and list(mean.get_ydata()) == [40.0]
        labels = walker.get_legend_handles_labels()[1]
        assert "PlaNet (CURL) 100k: 224" in labels and "random policy: 3" in labels
    finally:
        plt.close(fig)


def test_live_view_shows_counts_and_each_running_runs_episode_and_eval(tmp_path):
    write_run(tmp_path / "walker-walk" / "s0", "walker-walk", 10, {2000: 12.5}, 3000)
    statuses = [RunStatus("walker-walk/s0", 10, "running"), RunStatus("x/s1", 10, "done"),
                RunStatus("x/s2", 10, "failed", "RuntimeError: boom"),
                RunStatus("x/s3", 10, "pending")]
    view = LiveView(tmp_path, 4, refresh=False)
    lines = view.lines(statuses)
    assert "done 1 | running 1 | pending 1 | failed 1" in lines[0]
    # 3 episodes of walker, x/s1's 10 (done), none of the others: 13 of 40, no pace yet.
    assert lines[1] == "  episodes 13 of 40 (32 %)"
    assert "walker-walk/s0: 3/10 episodes, eval return 12.5 at 2000 steps" in lines[2]
    assert "x/s2: FAILED: RuntimeError: boom" in lines[3]
    # 10 minutes later walker has 5 more episodes: 22 left at 2 min each.
    shutil.rmtree(tmp_path / "walker-walk" / "s0")
    write_run(tmp_path / "walker-walk" / "s0", "walker-walk", 10, {2000: 12.5}, 8000)
    view.baseline = (13, time.time() - 600)
    assert view.lines(statuses)[1] == "  episodes 18 of 40 (45 %); about 44 min left at this " \
        "session's pace"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_nodes(port: int, count: int, env: dict, timeout: float = 90.0) -> None:
    """Until the cluster at 127.0.0.1:port has `count` live nodes."""
    probe = ("import logging, sys, ray; ray.init(address=sys.argv[1], logging_level=logging.ERROR)"
             "; sys.exit(sum(node['Alive'] for node in ray.nodes()) < int(sys.argv[2]))")
    deadline = time.time() + timeout
    while subprocess.run([sys.executable, "-c", probe, f"127.0.0.1:{port}", str(count)],
                         env=env, capture_output=True, timeout=timeout).returncode != 0:
        assert time.time() < deadline, f"the Ray cluster never had {count} nodes"
        time.sleep(1)


def test_runs_are_placed_by_ray_on_a_two_node_cluster(tmp_path: Path):
    """A real second Ray node (a second raylet process) on this machine, joined to a head:
    with --address, the sweep only submits tasks, and Ray puts one run on each node."""
    import secrets

    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # Ray >= 2.59 asks for a token
    ray_cli = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block"]
    nodes = [subprocess.Popen([ray_cli, "start", "--head", f"--port={port}",
                               "--include-dashboard=false", *common], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        wait_for_nodes(port, 1, env)
        nodes.append(subprocess.Popen([ray_cli, "start", f"--address=127.0.0.1:{port}",
                                       *common], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for_nodes(port, 2, env)
        out = tmp_path / "cluster"
        result = subprocess.run(
            sweep_command(out, "--envs", "toy:dot", "--seeds", "0,1", "--episodes", "2",
                          "--address", f"127.0.0.1:{port}"),
            capture_output=True, text=True, timeout=TIMEOUT, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Ray at 127.0.0.1:{port}" in result.stdout and "2 CPUs" in result.stdout
        placed = {attempts(out / "toy_dot" / f"s{seed}")[0]["node"] for seed in (0, 1)}
        assert len(placed) == 2 and None not in placed  # one run on each node
        # Without --address, a sweep starts its own Ray even while another runs here.
        alone = tmp_path / "alone"
        result = subprocess.run(sweep_command(alone, "--envs", "toy:dot", "--episodes", "1"),
                                capture_output=True, text=True, timeout=TIMEOUT, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "started a local Ray instance" in result.stdout
        assert attempts(alone / "toy_dot" / "s0")[0]["node"] not in placed
    finally:
        for node in nodes:  # `ray stop` would stop every Ray on the machine: stop only ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)


def test_report_lists_the_runs_a_sweep_has_not_started(tmp_path: Path, capsys):
    from planet.config import make_config

    write_run(tmp_path / "walker-walk" / "s0", "walker-walk", 10, {2000: 8.0}, 2000)
    planned = make_config("smoke", {"env.name": "finger-spin", "train.episodes": 10})
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": {
        "walker-walk/s0": {"grid": {}, "config": planned.to_dict()},  # its own config wins
        "finger-spin/s0": {"grid": {}, "config": planned.to_dict()},
    }}))
    assert cli.main(["report", str(tmp_path), "--at-env-steps", "2000"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| walker-walk | 8 ± 0 (1) | 2 |" in text  # at 2,000 already: final, no *
    assert "| finger-spin | not reached * |  |" in text
    assert "finger-spin/s0 (not started)" in text and "walker-walk/s0 (at 2,000 steps)" in text
    # No command in this sweep.json: the title is the folder's name, the report's command shows.
    assert text.startswith(f"# Report: {tmp_path.name}\n")
    assert "Runs made by" not in text
    assert f"planet report {tmp_path} --at-env-steps 2000" in text


def test_a_killed_attempt_counts_as_pending_until_its_retry_starts(tmp_path: Path):
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    append_attempt(tmp_path, {"event": "start", "session": "s", "host": host, "pid": gone.pid})
    assert running_or_pending(tmp_path, "s") == "pending"  # its process is gone
    append_attempt(tmp_path, {"event": "start", "session": "s", "host": host,
                              "pid": os.getpid()})
    assert running_or_pending(tmp_path, "s") == "running"
    append_attempt(tmp_path, {"event": "end", "session": "s", "outcome": "error"})
    assert running_or_pending(tmp_path, "s") == "pending"
    assert running_or_pending(tmp_path, "another session") == "pending"


def test_a_sweep_saved_with_the_old_machine_switch_names_is_the_same_sweep(tmp_path: Path):
    """sweep.json written when the machine switches were model.*/train.*/planner.* fields: the
    same command plans the same runs, with no difference to refuse or report."""
    from planet.errors import TrainError
    from planet.sweep import check_against_saved, plan_sweep, write_sweep_file

    plan = plan_sweep(["toy:dot"], [0, 1], 4, "cpu", {"train.test_interval": "5"}, {})
    write_sweep_file(tmp_path, plan, ["planet", "sweep"])
    saved = json.loads((tmp_path / "sweep.json").read_text())
    for run in saved["runs"].values():
        machine = run["config"].pop("machine")
        run["config"]["model"]["fast_deconv"] = machine["fast_deconv"]
        run["config"]["model"]["channels_last"] = machine["channels_last"]
        run["config"]["planner"]["compile"] = machine["compile_planner"]
        for name in ("precision", "deterministic", "reuse_host_memory"):
            run["config"]["train"][name] = machine[name]
    (tmp_path / "sweep.json").write_text(json.dumps(saved))
    assert check_against_saved(tmp_path, plan) == []
    changed = plan_sweep(["toy:dot"], [0, 1], 4, "cpu", {"train.test_interval": "5",
                                                          "planner.horizon": "3"}, {})
    with pytest.raises(TrainError, match="planner.horizon: 12 -> 3"):
        check_against_saved(tmp_path, changed)
