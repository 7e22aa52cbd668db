"""benchmarks/gpu_check.sh: its CPU dry run (--device cpu --quick) runs every stage and writes
every file, so the GPU check cannot rot between GPU loans; and its verdicts can fail."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from planet import gpu_check

ROOT = Path(__file__).resolve().parent.parent
FILES = {"check.json", "summary.md", "bench.json", "train_metrics.jsonl", "tests.log",
         "bench.log", "train.log"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu_check") / "cpu"
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--quick", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
        timeout=600,
    )
    return run, out


def test_dry_run_passes_every_stage_with_a_progress_line_each(dry_run):
    run, out = dry_run
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for number, stage in enumerate(["system", "tests", "bench", "train"], start=1):
        assert f"[gpu-check {number}/4] {stage}: ok in " in run.stdout, run.stdout
    assert "[gpu-check] all stages passed" in run.stdout
    assert {path.name for path in out.iterdir()} == FILES  # flat, and few enough to fetch
    check = json.loads((out / "check.json").read_text())
    assert check["ok"] and check["quick"]
    assert list(check["stages"]) == ["system", "tests", "bench", "train"]
    assert all(stage["status"] == "ok" and not stage["problems"]
               for stage in check["stages"].values())


def test_dry_run_tests_stage_ran_the_device_tests(dry_run):
    _, out = dry_run
    tests = json.loads((out / "check.json").read_text())["stages"]["tests"]["result"]
    assert tests["files"] == gpu_check.QUICK_TEST_FILES
    assert tests["passed"] >= 25 and tests["failed"] == 0 and tests["skipped"] == 0
    assert "--device cpu" in (out / "tests.log").read_text().splitlines()[0]


def test_dry_run_bench_has_finite_figures_and_each_switch(dry_run):
    _, out = dry_run
    bench = json.loads((out / "check.json").read_text())["stages"]["bench"]["result"]
    assert bench["checks_ok"] == {"losses": True, "planner": True}
    for key in ("update", "plan_1", "plan_2", "act", "episode"):
        figure = bench["figures"][key]
        assert figure["fast"] > 0 and math.isfinite(figure["fast"]), key
        assert figure["reference"] > 0 and math.isfinite(figure["ratio"]), key
    assert bench["skipped"] == {"env_step": "--skip-env"}
    assert list(bench["switches"]) == ["machine.fast_deconv", "machine.channels_last"]
    for key, switch in bench["switches"].items():
        assert switch["default"] is True and switch["flipped"] is False, key
        assert 0 < switch["episode_ratio"] < 100, key
        assert set(switch["figures"]) == {"update", "plan_1", "plan_2", "act"}
        # Two rounds are too few to change a default (MIN_ROUNDS), whatever they showed.
        assert switch["change_default"] is False
    full = json.loads((out / "bench.json").read_text())
    assert full["system"]["device"] == "cpu" and full["repeats"] == 2


def test_dry_run_training_loss_fell_and_stayed_finite(dry_run):
    _, out = dry_run
    train = json.loads((out / "check.json").read_text())["stages"]["train"]["result"]
    assert train["loss_fell"] and train["loss_last"] < train["loss_first"]
    assert train["all_finite"] and train["nonfinite_updates"] == 0
    assert train["training_episodes"] >= gpu_check.QUICK.min_train_episodes
    assert train["evaluations"] >= 1 and train["resumes"] == 1
    evaluate = train["evaluate"]
    assert evaluate["device"] == "cpu" and len(evaluate["returns"]) == gpu_check.EVALUATE_EPISODES
    records = [json.loads(line) for line in (out / "train_metrics.jsonl").read_text().splitlines()]
    assert len(records) == train["episodes"]
    summary = (out / "summary.md").read_text()
    for heading in ("# GPU check: cpu", "## Bench", "## Switches", "## Training (toy:dot)"):
        assert heading in summary, heading
    # The rule is the one bench applies, written from its constants.
    assert "over at least 5 interleaved rounds, the flipped switch takes under 0.95x" in summary


def test_judge_training_fails_a_flat_loss_and_non_finite_numbers():
    good = [{"episode": 0, "return": -9.0, "nonfinite_updates": 0},
            {"episode": 1, "return": -8.0, "loss_total": 50.0, "nonfinite_updates": 0,
             "eval_return": -7.5},
            {"episode": 2, "return": -7.0, "loss_total": 20.0, "nonfinite_updates": 0}]
    verdict = gpu_check.judge_training(good, resumes=1)
    assert verdict["problems"] == [] and verdict["loss_fell"]
    assert (verdict["evaluations"], verdict["resumes"]) == (1, 1)
    flat = [dict(record) for record in good]
    flat[2]["loss_total"] = 60.0
    assert gpu_check.judge_training(flat, 1)["problems"] == [
        "the loss did not fall: 50.000 -> 60.000"]
    broken = [dict(record) for record in good]
    broken[1]["grad_norm"] = float("nan")
    broken[2]["nonfinite_updates"] = 3
    problems = gpu_check.judge_training(broken, 1)["problems"]
    assert "non-finite numbers in episodes [1]" in problems
    assert "3 updates had a non-finite loss or gradient" in problems
    assert "only 1 training episodes" in gpu_check.judge_training(good[:2], 1)["problems"][-1]
    assert "only 0 training episodes" in gpu_check.judge_training(good[:1], 1)["problems"][-1]
    unevaluated = [{key: value for key, value in record.items() if key != "eval_return"}
                   for record in good]
    assert gpu_check.judge_training(unevaluated, 0)["problems"] == [
        "no evaluation ran during training", "the run was not resumed"]


def test_judge_evaluate_wants_one_finite_return_per_episode(tmp_path):
    path = tmp_path / "eval.json"
    assert gpu_check.judge_evaluate(path)["problems"] == ["planet evaluate wrote no eval.json"]
    path.write_text(json.dumps({"returns": [1.0, 2.0], "device": "cuda:0"}))
    assert gpu_check.judge_evaluate(path) == {"returns": [1.0, 2.0], "device": "cuda:0",
                                              "problems": []}
    path.write_text(json.dumps({"returns": [1.0, float("nan")]}))
    assert "expected 2 finite ones" in gpu_check.judge_evaluate(path)["problems"][0]
    path.write_text(json.dumps({"returns": [1.0]}))
    assert "expected 2 finite ones" in gpu_check.judge_evaluate(path)["problems"][0]
    path.write_text('{"returns": [1.0, ')  # killed while writing
    assert "does not parse" in gpu_check.judge_evaluate(path)["problems"][0]


def test_parse_junit_counts_failures_and_skips(tmp_path):
    path = tmp_path / "tests.xml"
    path.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2'
        '&#10;more"/></testcase>'
        '<testcase classname="tests.test_a" name="test_err"><error message="boom"/></testcase>'
        '<testcase classname="tests.test_b" name="test_cpu"><skipped message="cpu"/></testcase>'
        "</testsuite></testsuites>"
    )
    result = gpu_check.parse_junit(path)
    assert (result["passed"], result["failed"], result["skipped"]) == (1, 2, 1)
    assert result["failures"] == ["tests.test_a::test_bad: assert 1 == 2",
                                  "tests.test_a::test_err: boom"]
    assert result["skipped_tests"] == ["tests.test_b::test_cpu"]


def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "finds no CUDA device" in error
    assert not (tmp_path / "out").exists()


def test_parse_pytest_log_counts_a_run_cut_short(tmp_path):
    path = tmp_path / "tests.log"
    path.write_text("tests/test_a.py::test_one PASSED                    [ 25%]\n"
                    "tests/test_a.py::test_two[cuda-1] FAILED            [ 50%]\n"
                    "tests/test_b.py::test_cpu SKIPPED (tests the CPU)   [ 75%]\n"
                    "tests/test_b.py::test_slow \n")  # killed here
    result = gpu_check.parse_pytest_log(path)
    assert (result["passed"], result["failed"], result["skipped"]) == (1, 1, 1)
    assert result["failures"] == ["tests/test_a.py::test_two[cuda-1]"]


@pytest.mark.parametrize("plan", [gpu_check.FULL, gpu_check.QUICK], ids=["full", "quick"])
def test_each_plan_is_runnable_as_written(plan):
    """The full plan runs only on a GPU: check here what can go wrong before one is at hand."""
    import argparse

    from planet import bench
    from planet.config import make_config, parse_assignments
    from planet.envs.toy import DotEnv

    for path in plan.test_files:  # every test file exists and has tests that take `device`
        source = (ROOT / path).read_text()
        takes_device = r"^def test_\w+\([^)]*\bdevice\b|^def \w+\((?:[^)]*, )?device\b"
        assert re.search(takes_device, source, re.M), path
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(plan.bench_args)
    bench.parse_switches(args.switches, make_config(args.preset))
    config = make_config(plan.train_preset, {"env.name": "toy:dot",
                                             **parse_assignments(plan.train_overrides)})
    # Chunks must fit in a toy:dot episode (episode_steps + 1 rows), or sampling fails.
    assert config.train.chunk_length <= DotEnv().episode_steps + 1
    # The stages' own limits; --budget-s (default 420 s) cuts the later ones where needed.
    assert plan.test_limit_s + plan.bench_limit_s + plan.train_limit_s <= 8 * 60
    assert gpu_check.build_parser().parse_args([]).budget_s <= 7 * 60


def test_a_stage_that_breaks_leaves_the_others_and_the_report(tmp_path, monkeypatch, capsys):
    """An exception inside the check (a torn bench.json, say) fails that stage only; the report
    is written after every stage, so a check killed later still leaves what it found."""
    reports = []

    def tests_stage(device, plan, out, scratch):
        reports.append(json.loads((out / "check.json").read_text())["stages"].keys())
        return gpu_check.Stage("tests", "ok", 1.0, {"passed": 3, "failed": 0, "skipped": 0,
                                                    "files": ["tests/test_models.py"]})

    def bench_stage(device, plan, out):
        raise json.JSONDecodeError("Expecting value", "", 0)

    def train_stage(device, plan, out, scratch):
        reports.append(json.loads((out / "check.json").read_text())["stages"].keys())
        assert plan.train_limit_s <= 30  # what the budget left
        return gpu_check.Stage("train", "ok", 1.0, {"episodes": 3})

    monkeypatch.setattr(gpu_check, "tests_stage", tests_stage)
    monkeypatch.setattr(gpu_check, "bench_stage", bench_stage)
    monkeypatch.setattr(gpu_check, "train_stage", train_stage)
    out = tmp_path / "out"
    code = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out), "--budget-s", "30"])
    assert code == 1
    assert [list(keys) for keys in reports] == [["system"], ["system", "tests", "bench"]]
    check = json.loads((out / "check.json").read_text())
    assert {name: stage["status"] for name, stage in check["stages"].items()} == {
        "system": "ok", "tests": "ok", "bench": "failed", "train": "ok"}
    assert "JSONDecodeError: Expecting value" in check["stages"]["bench"]["problems"][0]
    assert "| bench | failed |" in (out / "summary.md").read_text()
    assert "[gpu-check 3/4] bench: failed in " in capsys.readouterr().out


def test_tests_stage_with_nothing_passed_is_not_ok(tmp_path, monkeypatch):
    def run_logged(command, log_path, limit_s, threads=0):
        junit = Path(next(arg for arg in command if arg.startswith("--junitxml=")).split("=")[1])
        junit.write_text('<testsuite tests="1" skipped="1"><testcase classname="t" name="a">'
                         '<skipped message="CPU only"/></testcase></testsuite>')
        log_path.write_text("")
        return 0, 1.0

    monkeypatch.setattr(gpu_check, "run_logged", run_logged)
    stage = gpu_check.tests_stage("cuda", gpu_check.QUICK, tmp_path, tmp_path)
    assert stage.status == "failed" and "no test passed" in stage.problems[-1]


def test_a_training_worker_killed_mid_line_is_reported_not_a_crash(tmp_path, monkeypatch):
    """The worker killed at its limit can leave half a metrics line: the stage says it timed
    out and which line was cut, and judges the complete lines."""
    def run_logged(command, log_path, limit_s, threads=0):
        run_dir = Path(command[command.index("--train-worker") + 1])
        run_dir.mkdir(parents=True)
        lines = [json.dumps({"episode": episode, "return": -9.0, "loss_total": 5.0 - episode})
                 for episode in (0, 1)]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"episode": 2, "loss_to')
        log_path.write_text("")
        return None, limit_s

    monkeypatch.setattr(gpu_check, "run_logged", run_logged)
    monkeypatch.setattr(gpu_check, "judge_evaluate", lambda path: {"problems": []})
    stage = gpu_check.train_stage("cpu", gpu_check.QUICK, tmp_path, tmp_path)
    assert stage.status == "timed out"
    assert any("line 3 is not a complete JSON object" in problem for problem in stage.problems)
    assert (tmp_path / "train_metrics.jsonl").read_text().endswith('"loss_to')
    assert stage.result["episodes"] == 2, stage.result


def test_a_stage_past_its_limit_is_killed_with_its_children(tmp_path):
    """start_new_session + killpg: a grandchild (a compile worker, say) does not outlive it."""
    marker = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(marker)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    code, seconds = gpu_check.run_logged([sys.executable, "-c", script], tmp_path / "log", 3)
    assert code is None and seconds < 30
    grandchild = int(marker.read_text())
    import time

    for _ in range(50):  # dead a moment after the kill: gone, or a zombie nobody reaped yet
        try:
            state = Path(f"/proc/{grandchild}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state in ("Z", "X"):  # killed; its reaper (PID 1 here, maybe pytest) may be slow
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the grandchild outlived the timeout")
