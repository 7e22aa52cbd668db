"""Train a grid of runs (tasks x seeds x config values) on Ray: one laptop or a cluster.

    planet sweep --envs cartpole-swingup,walker-walk --seeds 0,1,2 --episodes 100 --preset cpu
                 --out sweeps/NAME [--set KEY=VALUE ...] [--grid KEY=V1,V2 ...]
                 [--address auto|ray://HOST:PORT] [--cpus-per-run N] [--gpus-per-run G]
                 [--parallel K] [--retries N]

Each point of envs x seeds x grid is one Ray task that calls the same `train()` as `planet train`,
so every run is an ordinary run folder (evaluate, predict, plot and watch work on it):

    OUT/sweep.json                 the command and every run's resolved config
    OUT/.lock                      held by the one driver of this folder while it runs
    OUT/<task>[/<grid>]/s<seed>/   run folders, each with train.log (the run's own output)
                                   and sweep-attempts.jsonl (one line per start and end)

Where each run stands is in its run folder. Running the same command again skips finished runs
and resumes the others from their last checkpoint; a different grid or config into the same
folder is refused with the differences; every --envs name and config value is checked before
sweep.json is written. Ray places the runs (a local Ray instance by default,
an existing cluster with --address) and retries a run whose worker dies or raises an unexpected
error up to --retries times. A run that fails with an error meant for the user (a refused
config, a damaged run folder, a folder in use) fails at once, since a retry would meet it again.
A failed run is reported with its last error line while the others go on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planet.config import (
    AUTO_PRESET,
    Config,
    ConfigError,
    apply_overrides,
    apply_preset,
    current_names,
    flatten,
    parse_assignments,
)
from planet.errors import TrainError, UsageError
from planet.resume import RESUMABLE_FIELDS, config_changes
from planet.run_files import SWEEP_ATTEMPTS_FILE, SWEEP_LOG_FILE
from planet.tasks import env_folder_name

SWEEP_FILE = "sweep.json"
# Variables read at import time (MuJoCo's GL backend) or by the crash tests: passed to workers.
FORWARDED_ENV = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "MUJOCO_EGL_DEVICE_ID", "PLANET_TEST_")
# A retried run may start while the killed attempt's process is still exiting: wait this long
# for its run-folder lock before giving up.
LOCK_WAIT_SECONDS = 120.0
# Set by --envs, --seeds and --episodes, and part of each run folder's name, so neither --set
# nor --grid may set them.
RUN_AXES = {"env.name": "--envs", "seed": "--seeds", "train.episodes": "--episodes"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--envs", required=True,
                        help="comma-separated tasks, e.g. cartpole-swingup,walker-walk")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--episodes", type=int, help="episodes per run (default: the preset's)")
    parser.add_argument("--preset", default=AUTO_PRESET,
                        help="presets for every run (default auto: paper with --gpus-per-run, "
                        "else cpu)")
    parser.add_argument("--out", required=True, help="sweep folder (run folders go inside)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field in every run (not env.name, seed or "
                        "train.episodes: --envs, --seeds and --episodes set those)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="sweep a config field over values (repeat for a product)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to use: HEAD_IP:6379, auto (on a cluster node), or "
                        "ray://HOST:PORT (default: start a local Ray instance for this command)")
    parser.add_argument("--cpus-per-run", type=int, default=1,
                        help="CPUs Ray reserves per run; torch uses that many threads")
    parser.add_argument("--gpus-per-run", type=float, default=0.0,
                        help="GPUs per run (default 0); > 0 trains on CUDA")
    parser.add_argument("--parallel", type=int, default=0,
                        help="at most this many runs at once (default: as many as fit)")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a run whose worker dies or raises an unexpected error is "
                        "retried before it is reported; errors meant for the user are not "
                        "retried (default 2)")
    parser.add_argument("--no-progress", action="store_true",
                        help="a line per change instead of a refreshing status block")


# --- the plan: one resolved config per run ---------------------------------------------------

@dataclass
class RunSpec:
    name: str  # relative path of the run folder inside the sweep folder
    config: Config
    grid: dict[str, str]  # this run's point of the grid (empty without --grid)


def split_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{what} is empty")
    if len(set(items)) != len(items):
        raise UsageError(f"{what} lists a value twice: {text}")
    return items


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['planner.candidates=100,300'] -> {'planner.candidates': ['100', '300']}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--grid expects section.field=V1,V2,..., got {item!r}")
        key, values = (part.strip() for part in item.split("=", 1))
        if key in grid:
            raise UsageError(f"--grid names {key} twice")
        if key in RUN_AXES:
            raise UsageError(f"--grid {key}: use {RUN_AXES[key]} for that")
        grid[key] = split_list(values, f"--grid {key}")
    return grid


def plan_sweep(
    envs: list[str],
    seeds: list[int],
    episodes: int | None,
    preset: str,
    sets: dict[str, str],
    grid: dict[str, list[str]],
    gpus_per_run: float = 0.0,
) -> dict[str, RunSpec]:
    """Every run's resolved config, keyed by run folder name. Bad keys or values raise here."""
    for key in sets:
        if key in RUN_AXES:
            raise UsageError(f"--set {key}: use {RUN_AXES[key]} for that")
    device = sets.get("device", "cuda" if gpus_per_run > 0 else "cpu")
    plan: dict[str, RunSpec] = {}
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    for env, point, seed in itertools.product(envs, points, seeds):
        config = Config()
        apply_preset(config, preset, device=device)
        overrides: dict[str, Any] = {"env.name": env, "seed": seed, "device": device}
        if episodes is not None:
            overrides["train.episodes"] = episodes
        overrides.update(sets)
        overrides.update(point)
        apply_overrides(config, overrides)
        parts = [env_folder_name(env)]
        if point:
            parts.append(",".join(f"{key}={value}" for key, value in point.items()))
        parts.append(f"s{seed}")
        name = "/".join(parts)
        plan[name] = RunSpec(name, config, point)
    return plan


def check_against_saved(out: Path, plan: dict[str, RunSpec]) -> list[str]:
    """Compare with the sweep folder's saved plan: refuse another grid or config; return the
    allowed changes (fields in RESUMABLE_FIELDS, such as train.episodes)."""
    saved_path = out / SWEEP_FILE
    if not saved_path.exists():
        return []
    try:
        saved = json.loads(saved_path.read_text())
        saved_runs = {name: current_names(flatten(run["config"]))
                      for name, run in saved["runs"].items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrainError(f"cannot read {saved_path}: {error}") from None
    problems, allowed = [], set()
    removed = sorted(set(saved_runs) - set(plan))
    added = sorted(set(plan) - set(saved_runs))
    if removed:
        problems.append(f"runs not in this command: {', '.join(removed)}")
    if added:
        problems.append(f"runs new in this command: {', '.join(added)}")
    changed: dict[str, list[str]] = {}
    for name in sorted(set(plan) & set(saved_runs)):
        changes = config_changes(saved_runs[name], flatten(plan[name].config.to_dict()))
        for key, text in changes.items():
            if key in RESUMABLE_FIELDS:
                allowed.add(text)
            else:
                changed.setdefault(text, []).append(name)
    for text, names in changed.items():
        problems.append(f"{text} ({len(names)} of {len(plan)} runs)")
    if problems:
        command = shlex.join(map(str, saved.get("command", []))) or "see sweep.json"
        raise TrainError(
            f"{out} holds a sweep with another grid or config: {'; '.join(problems)}. "
            f"Use another --out, or its own command: {command}"
        )
    return sorted(allowed)


def write_sweep_file(out: Path, plan: dict[str, RunSpec], command: list[str]) -> None:
    from planet.atomic_files import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "runs": {name: {"grid": run.grid, "config": run.config.to_dict()}
                 for name, run in plan.items()},
    }
    atomic_write_bytes(out / SWEEP_FILE, (json.dumps(data, indent=2) + "\n").encode())


# --- what a run folder says about its run ----------------------------------------------------

def episodes_done(run_dir: Path) -> int:
    """Episodes covered by the newest checkpoint (0 without one)."""
    from planet.checkpoint import checkpoint_episode, list_checkpoints

    newest = list_checkpoints(run_dir / "checkpoints")
    return checkpoint_episode(newest[0]) if newest else 0


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file ([] without it); a line cut short by a kill is skipped."""
    from planet.logging import parse_metrics

    return [record for _, record in parse_metrics(path.read_text())[0]] if path.exists() else []


def last_metrics(run_dir: Path) -> dict[str, Any]:
    """Episode, env steps and the newest evaluation, from the run's metrics.jsonl."""
    found: dict[str, Any] = {}
    for record in read_json_lines(run_dir / "metrics.jsonl"):
        found["episode"] = record.get("episode")
        found["env_steps"] = record.get("env_steps")
        if "eval_return" in record:
            found["eval_return"] = record["eval_return"]
            found["eval_env_steps"] = record.get("env_steps")
    return found


def read_attempts(run_dir: Path) -> list[dict[str, Any]]:
    return read_json_lines(run_dir / SWEEP_ATTEMPTS_FILE)


def append_attempt(run_dir: Path, event: dict[str, Any]) -> None:
    with open(run_dir / SWEEP_ATTEMPTS_FILE, "a") as handle:
        handle.write(json.dumps(event) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# --- the Ray task: one run ---------------------------------------------------------------------

def train_one(run_dir: str, config_data: dict[str, Any], cpus: int, session: str) -> dict:
    """Train one run of the sweep inside a Ray worker (a fresh process per run).

    All of the process's output goes to the run's train.log. Returns the episodes and env
    steps trained, or {"error": line} for an error meant for the user (planet.user_errors),
    which Ray would otherwise retry; any other exception propagates, and Ray retries the run.
    """
    import torch

    from planet.train import train
    from planet.user_errors import USER_ERRORS

    torch.set_num_threads(max(1, cpus))  # Ray starts workers with one OpenMP thread
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    attempt = 1 + sum(event.get("event") == "start" for event in read_attempts(folder))
    append_attempt(folder, {"event": "start", "attempt": attempt, "session": session,
                            "host": socket.gethostname(), "pid": os.getpid(),
                            "torch_threads": torch.get_num_threads(), "node": _ray_node_id(),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    redirect_output(folder / SWEEP_LOG_FILE)
    print(f"--- attempt {attempt} on {socket.gethostname()} (pid {os.getpid()}), "
          f"{time.strftime('%Y-%m-%dT%H:%M:%S')}, {cpus} CPU thread(s)", flush=True)
    try:
        on_episode = injected_fault(folder, attempt)
        summary = train(Config.from_dict(config_data), folder, progress=False,
                        log=lambda message: print(message, flush=True), on_episode=on_episode,
                        lock_wait=LOCK_WAIT_SECONDS)
    except BaseException as error:
        append_attempt(folder, {"event": "end", "attempt": attempt, "session": session,
                                "outcome": "error", "error": _last_line(error)})
        if isinstance(error, USER_ERRORS):
            print(f"planet train: error: {error}", flush=True)  # into train.log
            return {"error": _last_line(error)}
        raise
    append_attempt(folder, {"event": "end", "attempt": attempt, "session": session,
                            "outcome": "done", "episodes": summary["episodes"]})
    print(f"done: {summary['episodes']} episodes, {summary['env_steps']} env steps", flush=True)
    return {key: summary[key] for key in ("episodes", "env_steps")}


def _ray_node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def redirect_output(log_path: Path) -> None:
    """Send everything this worker process writes (Python's and C's stdout and stderr) to the
    end of `log_path`."""
    log_file = open(log_path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    sys.stdout = sys.stderr = log_file


def injected_fault(run_dir: Path, attempt: int):
    """The fault the sweep tests ask for this run in PLANET_TEST_SWEEP_FAULT ("<run name>=
    <fault>;..."): raise now ("always-fail", "user-error"), or return an on_episode hook that
    SIGKILLs the worker after the first checkpoint of attempt 1 ("kill-first-attempt").
    Without one, None."""
    fault = None
    for item in os.environ.get("PLANET_TEST_SWEEP_FAULT", "").split(";"):
        name, _, wanted = item.partition("=")
        if name and run_dir.as_posix().endswith("/" + name):
            fault = wanted
    if fault == "always-fail":
        raise RuntimeError("injected failure (PLANET_TEST_SWEEP_FAULT)")
    if fault == "user-error":
        raise TrainError("injected user error (PLANET_TEST_SWEEP_FAULT)")
    if fault == "kill-first-attempt" and attempt == 1:
        return lambda record, components: os.kill(os.getpid(), signal.SIGKILL)
    return None


def _last_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}".strip()


def describe_failure(error: Exception, run_dir: Path, session: str) -> str:
    """The last error line of a failed Ray task: the exception's, or the last one this
    session's attempts wrote (an earlier session's error would be stale)."""
    import ray.exceptions

    if isinstance(error, ray.exceptions.RayTaskError):
        cause = getattr(error, "cause", None)
        if cause is not None:
            return _last_line(cause)
    lines = []
    for event in read_attempts(run_dir):
        if event.get("event") == "end" and event.get("error") and event.get("session") == session:
            lines.append(event["error"])
    if isinstance(error, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return "its worker process died" + (f" (last error: {lines[-1]})" if lines else "")
    return lines[-1] if lines else _last_line(error)


# --- the driver --------------------------------------------------------------------------------

@dataclass
class RunStatus:
    name: str
    episodes: int
    state: str = "pending"  # pending, running, done, failed
    error: str = ""


class LiveView:
    """One refreshing block on a terminal; elsewhere, a line whenever something changes."""

    def __init__(self, out: Path, total: int, stream=None, refresh: bool | None = None,
                 detail_seconds: float = 600.0):
        self.out, self.total = out, total
        self.stream = stream or sys.stdout
        self.refresh = self.stream.isatty() if refresh is None else refresh
        self.drawn = 0
        self.last_line = ""
        self.started = self.last_detail = time.time()
        self.detail_seconds = detail_seconds  # without refresh: the whole block this often
        self.baseline: tuple[int, float] | None = None  # (episodes, time) when first shown

    def lines(self, statuses: list[RunStatus]) -> list[str]:
        counts = {state: sum(s.state == state for s in statuses)
                  for state in ("done", "running", "pending", "failed")}
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.time() - self.started))
        head = (f"sweep {self.out}: {self.total} runs | done {counts['done']} | running "
                f"{counts['running']} | pending {counts['pending']} | failed {counts['failed']}"
                f" | {elapsed}")
        # What each unfinished run's metrics say, read once per refresh.
        seen_by_run = {status.name: last_metrics(self.out / status.name) for status in statuses
                       if status.state != "done"}
        rows = [head, self.progress(statuses, seen_by_run)]
        for status in statuses:
            if status.state == "running":
                seen = seen_by_run[status.name]
                done = episodes_collected(status, seen)
                text = f"  {status.name}: {done}/{status.episodes} episodes"
                if "eval_return" in seen:
                    text += (f", eval return {seen['eval_return']:.1f} "
                             f"at {seen['eval_env_steps']} steps")
                rows.append(text)
            elif status.state == "failed":
                rows.append(f"  {status.name}: FAILED: {status.error}")
        return rows

    def progress(self, statuses: list[RunStatus], seen_by_run: dict[str, dict]) -> str:
        """Episodes collected over all runs and, once some came in this session, the time
        left at this session's pace (rough: tasks' episodes take different times)."""
        done = sum(episodes_collected(status, seen_by_run.get(status.name, {}))
                   for status in statuses)
        total = sum(status.episodes for status in statuses)
        now = time.time()
        if self.baseline is None:
            self.baseline = (done, now)
        text = f"  episodes {done} of {total} ({100 * done / max(total, 1):.0f} %)"
        gained, seconds = done - self.baseline[0], now - self.baseline[1]
        if gained > 0 and done < total:
            left = (total - done) * seconds / gained
            text += f"; about {_duration(left)} left at this session's pace"
        return text

    def show(self, statuses: list[RunStatus]) -> None:
        rows = self.lines(statuses)
        if self.refresh:
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.write("\n".join(rows) + "\n")
            self.drawn = len(rows)
        else:
            line = rows[0].rsplit(" | ", 1)[0]  # without the clock: print changes only
            if time.time() - self.last_detail >= self.detail_seconds:
                self.stream.write("\n".join(rows) + "\n")
                self.last_detail = time.time()
            elif line != self.last_line:
                self.stream.write(rows[0] + "\n")
            self.last_line = line
        self.stream.flush()


def episodes_collected(status: RunStatus, seen: dict[str, Any]) -> int:
    """A run's episodes so far: all of them when done, else from its last metrics line."""
    if status.state == "done":
        return status.episodes
    episode = seen.get("episode")
    return min(status.episodes, episode + 1) if isinstance(episode, int) else 0


def _duration(seconds: float) -> str:
    """'40 min' under two hours, else '12.5 h'."""
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def forwarded_env(cpus: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key.startswith(FORWARDED_ENV)}
    env.update(OMP_NUM_THREADS=str(cpus), MKL_NUM_THREADS=str(cpus))
    return env


RAY_TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"


def quiet_default_token_auth(record: logging.LogRecord) -> bool:
    """A logging filter: drop Ray's notice that it enabled token authentication by default."""
    return not record.getMessage().startswith("Token authentication is enabled")


def start_ray(address: str | None, log) -> float:
    """Connect to (or start) Ray; returns the seconds it took."""
    import ray

    started = time.time()
    if address is None:  # "local": a new instance even when another Ray runs on this machine
        # Ray turns token authentication on for a new local instance when RAY_AUTH_MODE is
        # unset, and warns about that choice at every start; the choice stays, the warning goes.
        logging.getLogger(RAY_TOKEN_SETUP_LOGGER).addFilter(quiet_default_token_auth)
        ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)),
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    seconds = time.time() - started
    where = "a local Ray instance" if address is None else f"Ray at {address}"
    log(f"started {where} in {seconds:.1f} s: {ray.cluster_resources().get('CPU', 0):.0f} CPUs")
    return seconds


def drive(
    out: Path,
    plan: dict[str, RunSpec],
    *,
    address: str | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0.0,
    parallel: int = 0,
    retries: int = 2,
    view: LiveView | None = None,
    log=print,
    poll_seconds: float = 2.0,
) -> dict[str, RunStatus]:
    """Run every unfinished run of `plan` on Ray; returns each run's final status."""
    import ray

    statuses = {name: RunStatus(name, run.config.train.episodes) for name, run in plan.items()}
    todo = []
    for name, status in statuses.items():
        if episodes_done(out / name) >= status.episodes:
            status.state = "done"
        else:
            todo.append(name)
    # Seed-major: every task's first seed before any task's second, so a long sweep that is
    # stopped early has covered every task.
    seeds = list(dict.fromkeys(run.config.seed for run in plan.values()))
    todo.sort(key=lambda name: seeds.index(plan[name].config.seed))
    finished = len(plan) - len(todo)
    log(f"{len(plan)} runs: {finished} finished earlier, {len(todo)} to run or resume")
    view = view or LiveView(out, len(plan))
    if not todo:
        view.show(list(statuses.values()))
        return statuses
    session = uuid.uuid4().hex[:12]
    start_ray(address, log)
    # max_calls=1: a fresh worker process per run (its output is redirected to the run's log).
    task = ray.remote(max_calls=1)(train_one).options(
        num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=retries,
        retry_exceptions=True,
        runtime_env={"env_vars": forwarded_env(cpus_per_run)},
    )
    pending = list(todo)
    in_flight: dict[Any, str] = {}
    limit = parallel if parallel > 0 else len(todo)
    try:
        check_a_run_fits(ray.nodes(), cpus_per_run, gpus_per_run)
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                name = pending.pop(0)
                config = plan[name].config.to_dict()
                in_flight[task.remote(str((out / name).resolve()), config, cpus_per_run,
                                      session)] = name
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=poll_seconds)
            for ref in ready:
                name = in_flight.pop(ref)
                try:
                    error = ray.get(ref).get("error")
                except ray.exceptions.RayError as failure:
                    error = describe_failure(failure, out / name, session)
                statuses[name].state = "failed" if error else "done"
                statuses[name].error = error or ""
            for name in in_flight.values():
                statuses[name].state = running_or_pending(out / name, session)
            view.show(list(statuses.values()))
    finally:
        stopping = time.time()
        ray.shutdown()
        log(f"Ray shut down in {time.time() - stopping:.1f} s")
    return statuses


def check_a_run_fits(nodes: list[dict[str, Any]], cpus_per_run: int,
                     gpus_per_run: float) -> None:
    """A UsageError when no live Ray node has the CPUs and GPUs one run asks for: Ray would
    wait for such a node for ever, and the sweep with it. `nodes`: ray.nodes()."""
    sizes = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    if any(size.get("CPU", 0) >= cpus_per_run and size.get("GPU", 0) >= gpus_per_run
           for size in sizes):
        return
    largest = max(sizes, key=lambda size: (size.get("GPU", 0), size.get("CPU", 0)), default={})
    asked = f"--cpus-per-run {cpus_per_run}" + (
        f" --gpus-per-run {gpus_per_run:g}" if gpus_per_run else "")
    raise UsageError(
        f"{asked}: no Ray node has that much (the largest has {largest.get('CPU', 0):g} CPUs "
        f"and {largest.get('GPU', 0):g} GPUs), so no run could start; ask for less per run")


def running_or_pending(run_dir: Path, session: str) -> str:
    """From this session's attempt lines: started and not ended with an error (a run that has
    just ended well counts as running until its task returns). An attempt whose process on this
    host is gone was killed and waits for its retry."""
    events = [e for e in read_attempts(run_dir) if e.get("session") == session]
    if not events or events[-1].get("outcome") == "error":
        return "pending"
    last = events[-1]
    if (last.get("event") == "start" and last.get("host") == socket.gethostname()
            and not _process_exists(int(last.get("pid", 0)))):
        return "pending"
    return "running"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def main(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()  # absolute: Ray workers do not share our working directory
    if args.cpus_per_run < 1:
        raise UsageError(f"--cpus-per-run must be at least 1, got {args.cpus_per_run}")
    if args.gpus_per_run < 0 or args.parallel < 0 or args.retries < 0:
        raise UsageError("--gpus-per-run, --parallel and --retries must be >= 0")
    if args.episodes is not None and args.episodes < 0:
        raise UsageError(f"--episodes must be >= 0, got {args.episodes}")
    try:
        seeds = [int(seed) for seed in split_list(args.seeds, "--seeds")]
    except ValueError:
        raise UsageError(f"--seeds must be integers, got {args.seeds!r}") from None
    envs = split_list(args.envs, "--envs")
    from planet.envs import check_env_name

    for env in envs:  # a typo would otherwise be saved in sweep.json and fail in a worker
        check_env_name(env)
    try:
        plan = plan_sweep(envs, seeds, args.episodes, args.preset, parse_assignments(args.set),
                          parse_grid(args.grid), args.gpus_per_run)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    from planet.run_lock import hold_run_dir

    # One driver per sweep folder: a second one would start the same runs again, and each of
    # its tasks would wait for the first one's run locks and then fail.
    with hold_run_dir(out, "planet sweep", what="sweep folder"):
        return run_plan(out, plan, args)


def run_plan(out: Path, plan: dict[str, RunSpec], args: argparse.Namespace) -> int:
    """Check the plan against the folder's saved one, save it, run it, print the outcome."""
    allowed = check_against_saved(out, plan)
    for change in allowed:
        print(f"sweep: allowed change {change}")
    write_sweep_file(out, plan, ["planet", *getattr(args, "argv", ["sweep"])])
    view = LiveView(out, len(plan), refresh=False if args.no_progress else None)
    try:
        statuses = drive(out, plan, address=args.address, cpus_per_run=args.cpus_per_run,
                         gpus_per_run=args.gpus_per_run, parallel=args.parallel,
                         retries=args.retries, view=view)
    except KeyboardInterrupt:
        print(f"planet sweep: interrupted. Every run keeps its last checkpoint in {out}; run "
              "the same command again to continue.", file=sys.stderr)
        return 130
    failed = [status for status in statuses.values() if status.state == "failed"]
    done = sum(status.state == "done" for status in statuses.values())
    print(f"sweep {out}: {done} of {len(statuses)} runs done, {len(failed)} failed")
    for status in failed:
        log = out / status.name / SWEEP_LOG_FILE
        print(f"  failed: {status.name}: {status.error} (log: {log})")
    print(f"next: planet report {out}")
    return 1 if failed else 0
