"""The GPU path checked in minutes: device tests, `planet bench` and a short training run.

    benchmarks/gpu_check.sh --out results/gpu/nvidia-h200       # a CUDA machine: under 8 minutes
    benchmarks/gpu_check.sh --device cpu --quick --out /tmp/c    # the CPU dry run (CI runs it)

Stages, each but the first in its own process under a time limit, so that a crash or a hang in
one still leaves the others' results (and a line saying what happened):
  1. system  torch, CUDA, the GPU, which optional packages are installed
  2. tests   the device-independent tests (models, objectives, planner, agent, compiled
             planner, fast path, preprocessing) with `pytest --device`; exact rewrites are
             compared with PyTorch's own layers on the CPU there
  3. bench   `planet bench --device` on the paper configuration: reference vs fast path, and
             the fast path with each switch whose default comes from CPU figures flipped
             (SWITCHES); not the env figure, which times MuJoCo rendering on the CPU
  4. train   the paper configuration on toy:dot for a wall-clock budget, with evaluations and
             model images every 2 episodes, then a resume for one more episode (the
             checkpoint's optimiser and GPU random state back on the device), then `planet
             evaluate` of its newest checkpoint on the device (two envs acting as one batch):
             the loss must fall, every logged number must be finite, and all three must have
             happened

Everything lands in --out (7 files, flat, fit to commit as results/gpu/<gpu-name>/):
check.json (every stage's result), summary.md (a short report), bench.json, train_metrics.jsonl
and the three stages' logs (tests.log, bench.log, train.log). Exit code 0 when every stage
passed.

Needs: PyTorch, numpy, pytest, tqdm, tensorboard (and the Pillow it requires: the training stage
logs images) and gymnasium (toy:dot is a Gymnasium env);
no network and no display. MuJoCo and dm_control are optional. benchmarks/gpu_check.sh installs
gymnasium from wheels in .whl/ when it is missing (see the script).

Switch defaults: a switch's default changes on CUDA only on this check's figure, by
planet.bench.SWITCH_RULE on the model work of one episode (C updates + one episode of act
calls) with the switch flipped against the default, over interleaved rounds. check.json and
summary.md say for each switch whether it holds ("change the default" or "keep the default");
where it does, the config chooses that switch per device, with the figure in its docstring.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planet.config import Config

ROOT = Path(__file__).resolve().parent.parent
# The compiled planner last: its compiles are the slowest part, and a stage cut short by its
# time limit still reports the tests that ran (parse_pytest_log).
TEST_FILES = [
    "tests/test_models.py", "tests/test_objectives.py", "tests/test_planner.py",
    "tests/test_preprocess.py", "tests/test_agent.py", "tests/test_fast_path.py",
    "tests/test_planner_compile.py",
]
# --quick: the fast files only (the compiled planner and the float64 gradchecks take minutes on
# 2 CPU cores); CI runs every one of them on the CPU anyway.
QUICK_TEST_FILES = ["tests/test_models.py", "tests/test_objectives.py",
                    "tests/test_planner.py", "tests/test_preprocess.py", "tests/test_agent.py"]
# Switches whose defaults were chosen from CPU figures only.
SWITCHES = ["machine.fast_deconv", "machine.channels_last", "machine.compile_planner"]
OPTIONAL_PACKAGES = ["numpy", "pytest", "tqdm", "tensorboard", "PIL", "gymnasium", "dm_control",
                     "mujoco", "triton", "matplotlib", "imageio"]


# Evaluation (its private RNG stream, the eval GIF, the open-loop strip) and the reconstruction
# strip run on the device in the short training run too, not only every 25 episodes.
EVALS_AND_IMAGES_EVERY_2 = ["train.test_interval=2", "train.image_log_interval=2"]
EVALUATE_EPISODES = 2  # `planet evaluate` after training: envs acting as one batch
# Of the training stage's time limit, what the worker keeps for after its training budget: the
# episode under way, the resume (a rebuild, the replay, one episode) and `planet evaluate`.
AFTER_TRAINING_S = 45.0


@dataclass
class Plan:
    """Sizes and time limits of one check (full on a GPU, or --quick)."""

    test_files: list[str]
    test_limit_s: float
    bench_args: list[str]
    bench_limit_s: float
    train_preset: str
    train_overrides: list[str]
    train_seconds: float
    train_limit_s: float
    min_train_episodes: int
    threads: int = 0  # torch threads in each stage's process (0: torch's choice)


FULL = Plan(
    test_files=TEST_FILES, test_limit_s=140,
    # --skip-env: the env step is MuJoCo rendering on the CPU, not a figure of the GPU.
    bench_args=["--preset", "paper", "--repeats", "10", "--batch-envs", "5", "--skip-env",
                "--switches", ",".join(SWITCHES)],
    bench_limit_s=170,
    # toy:dot episodes last 30 steps (31 rows), too short for the paper's chunks of 50.
    train_preset="paper", train_overrides=["train.chunk_length=30", *EVALS_AND_IMAGES_EVERY_2],
    train_seconds=80,
    train_limit_s=150,
    min_train_episodes=3,
)
QUICK = Plan(
    test_files=QUICK_TEST_FILES, test_limit_s=120,
    # machine.compile_planner is left out: its first compile takes ~20 s per shape on a CPU.
    bench_args=["--preset", "smoke", "--repeats", "2", "--batch-envs", "2", "--skip-env",
                "--switches", "machine.fast_deconv,machine.channels_last"],
    bench_limit_s=120,
    train_preset="smoke",
    train_overrides=["train.seed_episodes=1", "train.collect_interval=8",
                     *EVALS_AND_IMAGES_EVERY_2],
    train_seconds=2, train_limit_s=120, min_train_episodes=3,
    # One thread: on a busy 2-core machine, threads waiting for each other make the tiny
    # models 100x slower (tests/conftest.py, one_thread).
    threads=1,
)


@dataclass
class Stage:
    name: str
    status: str = "not run"  # ok, failed, timed out, skipped
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# --- helpers -------------------------------------------------------------------------------
def slug(text: str) -> str:
    """'NVIDIA H200' -> 'nvidia-h200' (a folder name)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def all_finite(value: Any) -> bool:
    """True when every number in a nested dict/list is finite."""
    if isinstance(value, dict):
        return all(all_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(all_finite(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def run_logged(command: list[str], log_path: Path, limit_s: float,
               threads: int = 0) -> tuple[int | None, float]:
    """Run `command` from the repo root with its output in `log_path`; (exit code, seconds).

    The exit code is None when the command outran `limit_s` and was killed.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           # The GPU machine's pytest plugins are not ours: only our conftest is loaded.
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.setdefault("MUJOCO_GL", "egl")
    start = time.perf_counter()
    with open(log_path, "w") as log_file:
        log_file.write("$ " + " ".join(command) + "\n")
        log_file.flush()
        # Its own process group: on a timeout, compile workers and the like go with it.
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    return code, time.perf_counter() - start


def log_tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- stages --------------------------------------------------------------------------------
def system_stage(device: str) -> Stage:
    import torch

    stage = Stage("system")
    info: dict[str, Any] = {
        "device": device, "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
        "packages": {name: importlib.util.find_spec(name) is not None
                     for name in OPTIONAL_PACKAGES},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(name=properties.name, capability=f"{properties.major}.{properties.minor}",
                    memory_gib=round(properties.total_memory / 2**30, 1),
                    multiprocessors=properties.multi_processor_count,
                    cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = "cpu " + (platform.processor() or platform.machine())
    stage.result, stage.status = info, "ok"
    missing = [name for name in ("numpy", "pytest", "tqdm", "tensorboard", "gymnasium")
               if not info["packages"][name]]
    if missing:
        stage.problems.append(f"missing: {', '.join(missing)}")
    return stage


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and failures from pytest's --junitxml file."""
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in suite.iter("testcase"):
        for tag in ("failure", "error"):
            element = case.find(tag)
            if element is not None:
                message = (element.get("message") or "").strip().splitlines()[:1]
                failed.append(f"{case.get('classname')}::{case.get('name')}: "
                              f"{message[0][:200] if message else tag}")
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    skipped = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
               if case.find("skipped") is not None]
    return {"passed": passed, "failed": counts["failures"] + counts["errors"],
            "skipped": counts["skipped"], "failures": failed, "skipped_tests": skipped}


def parse_pytest_log(path: Path) -> dict[str, Any]:
    """Counts from `pytest -v` lines (`tests/x.py::test_y PASSED`), for a run cut short."""
    outcomes = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)",
                          path.read_text(errors="replace"), flags=re.MULTILINE)
    return {
        "passed": sum(outcome == "PASSED" for _, outcome in outcomes),
        "failed": sum(outcome in ("FAILED", "ERROR") for _, outcome in outcomes),
        "skipped": sum(outcome == "SKIPPED" for _, outcome in outcomes),
        "failures": [name for name, outcome in outcomes if outcome in ("FAILED", "ERROR")],
        "skipped_tests": [name for name, outcome in outcomes if outcome == "SKIPPED"],
    }


def tests_stage(device: str, plan: Plan, out: Path, scratch: Path) -> Stage:
    stage = Stage("tests")
    junit = scratch / "tests.xml"
    command = [sys.executable, "-m", "pytest", *plan.test_files, "--device", device, "-v",
               "-p", "no:cacheprovider", f"--junitxml={junit}"]
    code, stage.seconds = run_logged(command, out / "tests.log", plan.test_limit_s,
                                     plan.threads)
    if code is None:
        stage.status = "timed out"
        stage.result = parse_pytest_log(out / "tests.log") | {"files": plan.test_files}
        stage.problems.append(f"pytest outran {plan.test_limit_s:.0f} s; the counts are of "
                              "the tests it finished")
        stage.problems.extend(stage.result["failures"])
        return stage
    if not junit.exists():
        stage.status = "failed"
        stage.problems.append(f"pytest exited {code} without a report:\n"
                              + log_tail(out / "tests.log"))
        return stage
    stage.result = parse_junit(junit) | {"files": plan.test_files, "exit_code": code}
    stage.problems.extend(stage.result["failures"])
    if stage.result["passed"] == 0:
        stage.problems.append("no test passed (every one skipped on this device?)")
    stage.status = "ok" if code == 0 and not stage.problems else "failed"
    return stage


def bench_stage(device: str, plan: Plan, out: Path) -> Stage:
    stage = Stage("bench")
    path = out / "bench.json"
    command = [sys.executable, "-m", "planet.bench", "--device", device, *plan.bench_args,
               "--skip-memory", "--json", str(path)]
    code, stage.seconds = run_logged(command, out / "bench.log", plan.bench_limit_s,
                                     plan.threads)
    if code is None or not path.exists():
        stage.status = "timed out" if code is None else "failed"
        stage.problems.append(f"planet bench {'outran its limit' if code is None else 'failed'}"
                              f":\n{log_tail(out / 'bench.log')}")
        return stage
    bench = json.loads(path.read_text())
    checks = bench["checks"]
    stage.result = {
        "figures": {key: {name: figure.get(name) for name in ("label", "reference", "fast",
                                                              "ratio", "flops")}
                    for key, figure in bench["figures"].items()},
        "checks_ok": {"losses": checks["losses"]["ok"], "planner": checks["planner"]["ok"]},
        "grad_cosine": checks["losses"]["grad_cosine"],
        "planner_max_abs_diff": checks["planner"]["max_abs_diff"],
        "matmul_peak_flops_per_s": bench["matmul_peak_flops_per_s"],
        "skipped": bench.get("skipped", {}),
        "switches": {key: {name: switch[name] for name in (
            "default", "flipped", "episode_model_seconds", "episode_ratio", "faster",
            "change_default")} | {"figures": {figure: values["ratio"] for figure, values in
                                              switch["figures"].items()}}
                     for key, switch in bench.get("switches", {}).items()},
        "switch_rule": bench.get("switch_rule"),
        "exit_code": code,
    }
    if not all(stage.result["checks_ok"].values()):
        stage.problems.append("the reference and fast paths disagree (bench.log: loss check, "
                              "planner check)")
    if not all_finite(stage.result):
        stage.problems.append("a bench figure is not finite")
    stage.status = "ok" if code == 0 and not stage.problems else "failed"
    return stage


def train_stage(device: str, plan: Plan, out: Path, scratch: Path) -> Stage:
    stage = Stage("train")
    if importlib.util.find_spec("gymnasium") is None:
        stage.status = "skipped"
        stage.problems.append("toy:dot needs gymnasium: run benchmarks/gpu_check.sh "
                              "--fetch-wheels where pip can reach the index, and bring .whl/")
        return stage
    from planet.logging import read_metrics

    run_dir = scratch / "train_run"
    # A limit cut by --budget-s cuts the training budget with it, not the resume or evaluate.
    seconds = max(1.0, min(plan.train_seconds, plan.train_limit_s - AFTER_TRAINING_S))
    command = [sys.executable, "-m", "planet.gpu_check", "--train-worker", str(run_dir),
               "--device", device, "--preset", plan.train_preset, "--seconds", str(seconds),
               "--min-episodes", str(plan.min_train_episodes),
               *[arg for item in plan.train_overrides for arg in ("--set", item)]]
    code, stage.seconds = run_logged(command, out / "train.log", plan.train_limit_s,
                                     plan.threads)
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.exists():
        (out / "train_metrics.jsonl").write_bytes(metrics_path.read_bytes())
    # A worker killed at its time limit can leave half a line: reported, not a crash of the check.
    records = read_metrics(run_dir, warn=stage.problems.append)
    if code is None:
        stage.problems.append(f"training outran {plan.train_limit_s:.0f} s")
    elif code != 0:
        stage.problems.append(f"training exited {code}:\n{log_tail(out / 'train.log')}")
    resumes = run_dir / "resumes.jsonl"
    stage.result = judge_training(
        records, len(resumes.read_text().splitlines()) if resumes.exists() else 0)
    stage.problems.extend(stage.result.pop("problems"))
    stage.result["evaluate"] = judge_evaluate(run_dir / "eval.json")
    stage.problems.extend(stage.result["evaluate"].pop("problems"))
    stage.status = ("timed out" if code is None else
                    "ok" if code == 0 and not stage.problems else "failed")
    return stage


def judge_training(records: list[dict[str, Any]], resumes: int) -> dict[str, Any]:
    """Did the loss fall, was every logged number finite, did an evaluation run, and did the
    run resume (`resumes`: lines in resumes.jsonl)? From metrics.jsonl records."""
    trained = [r for r in records if "loss_total" in r]
    problems = []
    evaluations = sum("eval_return" in r for r in records)
    result: dict[str, Any] = {"episodes": len(records), "training_episodes": len(trained),
                              "evaluations": evaluations, "resumes": resumes}
    if not evaluations:
        problems.append("no evaluation ran during training")
    if not resumes:
        problems.append("the run was not resumed")
    if len(trained) < 2:
        problems.append(f"only {len(trained)} training episodes logged: too few to see the "
                        "loss fall")
    else:
        first, last = trained[0]["loss_total"], trained[-1]["loss_total"]
        result.update(loss_first=first, loss_last=last, loss_fell=last < first,
                      loss_curve=[r["loss_total"] for r in trained],
                      returns=[r["return"] for r in records])
        if not last < first:
            problems.append(f"the loss did not fall: {first:.3f} -> {last:.3f}")
    nonfinite = [r["episode"] for r in records if not all_finite(r)]
    skipped_updates = records[-1].get("nonfinite_updates", 0) if records else 0
    result.update(nonfinite_episodes=nonfinite, nonfinite_updates=skipped_updates,
                  all_finite=not nonfinite and skipped_updates == 0)
    if nonfinite:
        problems.append(f"non-finite numbers in episodes {nonfinite}")
    if skipped_updates:
        problems.append(f"{skipped_updates} updates had a non-finite loss or gradient")
    for key in ("time_per_update", "time_per_step"):
        values = sorted(r[key] for r in trained if key in r)
        if values:
            result[f"median_{key}"] = values[len(values) // 2]
    result["problems"] = problems
    return result


def judge_evaluate(path: Path) -> dict[str, Any]:
    """`planet evaluate`'s eval.json: one finite return per episode asked for."""
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        return {"problems": ["planet evaluate wrote no eval.json"]}
    except ValueError as error:  # the worker killed while writing it
        return {"problems": [f"planet evaluate's eval.json does not parse: {error}"]}
    returns = summary.get("returns", [])
    result: dict[str, Any] = {"returns": returns, "device": summary.get("device"),
                              "problems": []}
    if len(returns) != EVALUATE_EPISODES or not all(math.isfinite(r) for r in returns):
        result["problems"].append(f"planet evaluate: returns {returns}, expected "
                                  f"{EVALUATE_EPISODES} finite ones")
    return result


def train_worker(args: argparse.Namespace) -> int:
    """The training stage's process: train, resume, evaluate (each below); exit status."""
    from planet.config import make_config, parse_assignments

    overrides = {"env.name": "toy:dot", "device": args.device, "train.episodes": 100_000}
    overrides.update(parse_assignments(args.set))
    config = make_config(args.preset, overrides)
    run_dir = Path(args.train_worker)
    episodes = train_for(config, run_dir, args.seconds, args.min_episodes)
    resume_for_one_more(config, run_dir, episodes)
    return evaluate_on_device(run_dir, args.device)


def _print_now(line: str) -> None:
    print(line, flush=True)


def train_for(config: Config, run_dir: Path, seconds: float, min_episodes: int) -> int:
    """Train until `seconds` of wall time and `min_episodes` after the seed episodes; returns
    the episodes done."""
    from planet.train import train

    least = config.train.seed_episodes + min_episodes

    def stop(record: dict[str, Any], _components) -> bool:
        return record["wall_time"] >= seconds and record["episode"] + 1 >= least

    summary = train(config, run_dir, progress=False, on_episode=stop, log=_print_now)
    print(f"trained {summary['episodes']} episodes, {summary['env_steps']} env steps")
    return summary["episodes"]


def resume_for_one_more(config: Config, run_dir: Path, episodes: int) -> None:
    """One episode more from the checkpoint: model, optimiser and random state back on the
    device (train.episodes is a field a resume may change)."""
    from planet.config import apply_overrides
    from planet.train import train

    longer = copy.deepcopy(config)  # the caller's config stays the one the run started with
    apply_overrides(longer, {"train.episodes": episodes + 1})
    resumed = train(longer, run_dir, progress=False, log=_print_now)
    print(f"resumed at episode {resumed['resumed_from']}: {resumed['episodes']} episodes")


def evaluate_on_device(run_dir: Path, device: str) -> int:
    """`planet evaluate` as a user runs it (its own arguments, parsed as the command line does;
    a tool does not import the command line): the newest checkpoint loaded onto the device, and
    EVALUATE_EPISODES envs acting as one batch; writes RUN_DIR/eval.json."""
    from planet import evaluate

    parser = argparse.ArgumentParser(prog="planet evaluate")
    evaluate.add_arguments(parser)
    return evaluate.main(parser.parse_args([str(run_dir), "--episodes", str(EVALUATE_EPISODES),
                                            "--device", device, "--no-progress"]))


# --- report --------------------------------------------------------------------------------
def summary_markdown(stages: dict[str, Stage], command: str, seconds: float) -> str:
    system = stages["system"].result
    lines = [f"# GPU check: {system.get('name', '?')}", "",
             f"`{command}` on {system.get('time_utc', '?')}: torch {system.get('torch')}, "
             f"CUDA {system.get('torch_cuda')}, Python {system.get('python')}; "
             f"{seconds:.0f} s in all.", "",
             "| stage | status | seconds | notes |", "|---|---|---|---|"]
    for stage in stages.values():
        notes = "; ".join(problem.splitlines()[0] for problem in stage.problems) or "-"
        lines.append(f"| {stage.name} | {stage.status} | {stage.seconds:.0f} | {notes} |")
    tests = stages["tests"].result
    if tests:
        lines += ["", f"Tests: {tests['passed']} passed, {tests['failed']} failed, "
                  f"{tests['skipped']} skipped ({', '.join(tests['files'])})."]
    bench = stages["bench"].result
    if bench:
        lines += ["", "## Bench (reference: float32, eager, NCHW; fast: the defaults)", "",
                  "| figure | reference s | fast s | fast/ref |", "|---|---|---|---|"]
        for figure in bench["figures"].values():
            reference, ratio = figure.get("reference"), figure.get("ratio")
            reference_text = "-" if reference is None else f"{reference:.4f}"
            ratio_text = "-" if ratio is None else f"{ratio:.2f}"
            lines.append(f"| {figure['label']} | {reference_text} | {figure['fast']:.4f} | "
                         f"{ratio_text} |")
        for figure, reason in bench["skipped"].items():
            lines.append(f"\n{figure}: skipped ({reason}).")
        if bench["switches"]:
            lines += ["", "## Switches whose defaults come from CPU figures", "",
                      "Model work of one episode (C updates + one episode of act calls) with "
                      "the default and with the switch flipped (medians; the ratio is the "
                      "median of the rounds' ratios); per-figure ratios in check.json.", "",
                      "| switch | default -> flipped | default s | flipped s | ratio | verdict |",
                      "|---|---|---|---|---|---|"]
            for key, switch in bench["switches"].items():
                episode_seconds = switch["episode_model_seconds"]
                verdict = "change the default" if switch["change_default"] else "keep the default"
                lines.append(f"| {key} | {switch['default']} -> {switch['flipped']} | "
                             f"{episode_seconds['default']:.3f} | "
                             f"{episode_seconds['flipped']:.3f} | "
                             f"{switch['episode_ratio']:.2f} | {verdict} |")
            lines += ["", f"Rule (planet.bench): {bench['switch_rule']}; then the config "
                      "chooses it per device, with these figures quoted in its docstring."]
    train = stages["train"].result
    if train.get("training_episodes"):
        evaluate = train.get("evaluate", {})
        returns = ", ".join(f"{value:.1f}" for value in evaluate.get("returns", []))
        evaluated = (f" `planet evaluate` on {evaluate.get('device')}: returns {returns}."
                     if returns else " `planet evaluate` gave no returns.")
        lines += ["", "## Training (toy:dot)", "",
                  f"{train['episodes']} episodes ({train['training_episodes']} with updates, "
                  f"{train['evaluations']} evaluated, {train['resumes']} resume); "
                  f"loss {train.get('loss_first', float('nan')):.2f} -> "
                  f"{train.get('loss_last', float('nan')):.2f}; all finite: "
                  f"{train['all_finite']}; median update "
                  f"{train.get('median_time_per_update', float('nan')):.4f} s, median step "
                  f"{train.get('median_time_per_step', float('nan')):.4f} s.{evaluated}"]
    return "\n".join(lines) + "\n"


# --- main ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/gpu_check.sh", description=__doc__.strip().splitlines()[0],
        epilog="\n".join(__doc__.strip().splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="device to check (default cuda; cpu for the dry run)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and budgets: the dry run, about half a minute")
    parser.add_argument("--out", help="output folder (default results/gpu/<device name>)")
    parser.add_argument("--train-seconds", type=float,
                        help="training budget in seconds before the resume (default 80; 2 "
                        "with --quick)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="the whole check's time target: each stage's limit is cut to "
                        "what is left, but never below 10 s (default 420)")
    # The training stage's own process (internal).
    parser.add_argument("--train-worker", metavar="RUN_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="paper", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--min-episodes", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    return parser


def check(args: argparse.Namespace) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device cuda, but torch {torch.__version__} finds no CUDA device; "
              "--device cpu --quick is the dry run", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    if args.train_seconds is not None:
        plan = dataclasses.replace(plan, train_seconds=args.train_seconds)
    command = "benchmarks/gpu_check.sh " + " ".join(sys.argv[1:])
    start = time.perf_counter()
    deadline = start + args.budget_s
    stages: dict[str, Stage] = {}
    system = system_stage(args.device)
    out = Path(args.out or ROOT / "results" / "gpu" / slug(system.result["name"])).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stages["system"] = system
    print(f"[gpu-check 1/4] system: {system.status} in {system.seconds:.0f} s: "
          f"{system.result['name']}, torch {system.result['torch']}", flush=True)
    write_report(out, stages, command, time.perf_counter() - start, args.quick)

    def limit(planned: float) -> float:
        """A stage's time limit, cut so that the whole check ends by --budget-s."""
        return max(10.0, min(planned, deadline - time.perf_counter()))

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch_name:
        scratch = Path(scratch_name)
        steps = [
            ("tests", f"{len(plan.test_files)} files on {args.device}", plan.test_limit_s,
             lambda seconds: tests_stage(args.device, dataclasses.replace(
                 plan, test_limit_s=seconds), out, scratch)),
            ("bench", f"planet bench {' '.join(plan.bench_args)}", plan.bench_limit_s,
             lambda seconds: bench_stage(args.device, dataclasses.replace(
                 plan, bench_limit_s=seconds), out)),
            ("train", f"preset {plan.train_preset} on toy:dot for {plan.train_seconds:.0f} s",
             plan.train_limit_s,
             lambda seconds: train_stage(args.device, dataclasses.replace(
                 plan, train_limit_s=seconds), out, scratch)),
        ]
        for number, (name, what, planned, run_stage) in enumerate(steps, start=2):
            seconds = limit(planned)
            print(f"[gpu-check {number}/4] {name}: {what} (limit {seconds:.0f} s) ...",
                  flush=True)
            stages[name] = guarded(name, run_stage, seconds)
            print(f"[gpu-check {number}/4] {name}: {stages[name].status} in "
                  f"{stages[name].seconds:.0f} s{stage_note(stages[name])}", flush=True)
            for problem in stages[name].problems:
                print("    " + problem.replace("\n", "\n    "), flush=True)
            # After every stage: a check cut short later still leaves what it found.
            write_report(out, stages, command, time.perf_counter() - start, args.quick)
    seconds = time.perf_counter() - start
    ok = write_report(out, stages, command, seconds, args.quick)
    print(f"[gpu-check] {'all stages passed' if ok else 'FAILED'} in {seconds:.0f} s; "
          f"wrote {out}/summary.md and check.json", flush=True)
    return 0 if ok else 1


def guarded(name: str, run_stage, seconds: float) -> Stage:
    """Run one stage; an exception in this process (a torn output file, say) fails that stage
    with its traceback's last lines instead of ending the check."""
    started = time.perf_counter()
    try:
        return run_stage(seconds)
    except Exception:  # noqa: BLE001 - whatever it is, the other stages still run
        stage = Stage(name, status="failed", seconds=time.perf_counter() - started)
        stage.problems.append("the check itself failed in this stage:\n"
                              + "\n".join(traceback.format_exc().splitlines()[-6:]))
        return stage


def stage_note(stage: Stage) -> str:
    """The figures a stage's progress line ends with."""
    result = stage.result
    if stage.name == "tests":
        return (f": {result.get('passed', 0)} passed, {result.get('failed', 0)} failed, "
                f"{result.get('skipped', 0)} skipped")
    if stage.name == "bench":
        return "".join(f"; {key} faster {switch['faster']} ({switch['episode_ratio']:.2f}x "
                       "flipped)" for key, switch in result.get("switches", {}).items())
    return (f": loss {result.get('loss_first', float('nan')):.2f} -> "
            f"{result.get('loss_last', float('nan')):.2f}, {result.get('episodes', 0)} episodes")


def write_report(out: Path, stages: dict[str, Stage], command: str, seconds: float,
                 quick: bool) -> bool:
    """check.json and summary.md for the stages so far; returns whether all of them passed
    (stages not run yet count as not passed)."""
    ok = len(stages) == 4 and all(stage.status == "ok" for stage in stages.values())
    report = {"command": command, "quick": quick, "seconds": seconds, "ok": ok,
              "stages": {name: {"status": stage.status, "seconds": stage.seconds,
                                "problems": stage.problems, "result": stage.result}
                         for name, stage in stages.items()}}
    shown = {name: stages.get(name, Stage(name)) for name in ("system", "tests", "bench", "train")}
    (out / "check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(shown, command, seconds))
    return ok


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.train_worker:
        return train_worker(args)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
