"""Every `planet` command in README.md runs as written, each with a short time budget.

What runs: each line of the README's ```bash blocks that starts with `planet ` (a trailing `\\`
joins the next line; a trailing `# comment` is dropped), in README order, one after another in
one temporary working directory, as a user would type them after `./setup.sh train`. Later
commands use the run folders that earlier ones wrote (`runs/cartpole-swingup/cpu-s0`, ...).

A command passes when it exits 0 within its budget, or when it is still running at the end of
its budget without an error in its output; it is then stopped as a user would stop it (SIGINT,
then SIGKILL of its process group after STOP_GRACE seconds) and must answer with exit code 130
and its "interrupted" line, no traceback. Training for hours or timing a
benchmark therefore costs only the budget, and what is checked is that the command starts, reads
its arguments and config, and does real work without failing.

Commands that get something different are listed, with the reason, in SPECIAL: extra arguments
(appended, never replacing what the README says), a longer budget, a display, or a known bug.
Lines of the bash blocks that are not `planet` commands are listed in NOT_PLANET with what the
test does instead. A README command missing from neither list runs with the default budget; a
key of SPECIAL or NOT_PLANET that the README no longer has fails test_lists_match_the_readme.

The README's ```python blocks run afterwards, each as a script in the same directory
(test_readme_python): they load the run folders the commands wrote.

README.zh-CN.md must hold the same commands and Python blocks in the same order
(test_chinese_readme_matches).

The whole module takes about two minutes on 2 idle cores.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET = 6.0  # seconds: past start-up (imports, config, env, model) on 2 idle cores
STOP_GRACE = 20.0  # seconds a stopped command gets to exit after SIGINT (Ray shuts down in ~2 s)
FIRST_OUTPUT_LIMIT = 120.0  # seconds past the budget a silent command gets to print something
ERROR = re.compile(r"Traceback \(most recent call last\)|(^|\s)error:", re.IGNORECASE | re.M)


@dataclass(frozen=True)
class Special:
    why: str
    extra: tuple[str, ...] = ()  # appended to the command as written
    budget: float = DEFAULT_BUDGET
    must_finish: bool = False  # must exit 0 within the budget (later commands need its output)
    display: bool = False  # run with DISPLAY set to an Xvfb server
    known_bug: str = ""  # expected to fail until the bug is fixed (strict: a fix fails the test)


SPECIAL: dict[str, Special] = {
    "planet train --env cartpole-swingup": Special(
        "later commands read runs/cartpole-swingup/cpu-s0: with the cpu preset's 5 random seed "
        "episodes, --episodes 1 collects one, writes its checkpoint and exits; as written it "
        "trains for hours",
        extra=("--episodes", "1"), budget=120, must_finish=True),
    "planet train --env cartpole-swingup --seed 1": Special(
        "`planet plot` reads runs/cartpole-swingup/cpu-s1; --episodes 1 as above",
        extra=("--episodes", "1"), budget=120, must_finish=True),
    "planet train --preset smoke --episodes 3": Special(
        "the README promises a short run; its third episode plans and evaluates, which takes "
        "longer than the default budget", budget=12),
    "planet predict runs/cartpole-swingup/cpu-s0 --context 5 --horizon 50": Special(
        "needs no env or planner, so it is given time to finish: the run-folder table's videos/ "
        "row comes from it", budget=90, must_finish=True),
    "planet watch runs/cartpole-swingup/cpu-s0": Special(
        "needs a display: runs under an Xvfb server (apt-get install xvfb; ./setup.sh test "
        "installs it)", display=True),
    "planet sweep --envs cartpole-swingup,walker-walk --seeds 0,1,2 --episodes 100 --preset cpu "
    "--out sweeps/two-tasks --grid planner.candidates=100,300": Special(
        "starts a local Ray instance (about 5 s) before its first run starts", budget=15),
    "planet report sweeps/two-tasks --at-env-steps 100000,500000": Special(
        "runs right after the sweep above was stopped, before any of its runs evaluated"),
}

NOT_PLANET: dict[str, str] = {
    "./setup.sh train": "installs packages, then runs `planet train` (the first command here)",
    "./setup.sh test": "installs packages, then runs this test suite",
    "source .venv/bin/activate": "the test runs the `planet` next to this Python instead",
    "tensorboard --logdir runs": "TensorBoard's own command; the test checks that the runs "
                                 "written so far hold TensorBoard event files",
    "benchmarks/gpu_check.sh --out results/gpu/nvidia-h200": "needs a CUDA machine; its dry run "
        "(--device cpu --quick) is tests/test_gpu_check.py",
}


def readme_lines(path: Path) -> list[str]:
    """The lines of the ```bash blocks, continuation lines joined, comments dropped."""
    lines, in_block, pending = [], False, ""
    for raw in path.read_text().splitlines():
        if raw.startswith("```"):
            in_block = raw.strip() == "```bash" and not in_block
            continue
        if not in_block:
            continue
        line = (pending + " " + raw.strip()).strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        pending = ""
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line:
            lines.append(" ".join(line.split()))
    return lines


def python_blocks(path: Path) -> list[str]:
    """The text of each ```python block."""
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.S | re.M)


COMMANDS = [line for line in readme_lines(ROOT / "README.md") if line.startswith("planet ")]


def planet_executable() -> str:
    beside = Path(sys.executable).with_name("planet")
    found = str(beside) if beside.exists() else shutil.which("planet")
    assert found, "the `planet` command is not installed (./setup.sh install)"
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The user's shell: one working directory shared by all commands, in README order."""
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def xvfb_display():
    """An Xvfb server for the commands that open a window; stopped after the module."""
    assert shutil.which("Xvfb"), "Xvfb is missing: apt-get install -y xvfb (./setup.sh test)"
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        yield ":" + os.read(read_end, 16).decode().strip()
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(timeout=10)


def as_at_a_terminal() -> None:
    """In the child, before exec: Ctrl-C (and Ctrl-\\) act as at a terminal. A script's
    background job ignores SIGINT and SIGQUIT, and its children inherit that: a suite started
    that way would otherwise see every stopped command wait out STOP_GRACE."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@dataclass
class Outcome:
    output: str  # what it printed within its budget
    code: int | None  # exit code, or None if it was still running at the end of its budget
    stop_seconds: float | None = None  # from Ctrl-C to exit, for a stopped command
    stop_code: int | None = None  # its exit code after Ctrl-C
    after_stop: str = ""  # what it printed after Ctrl-C


def run_with_budget(argv: list[str], cwd: Path, env: dict, budget: float) -> Outcome:
    """Run argv for at most `budget` seconds, then press Ctrl-C."""
    log = cwd / ".readme-command.log"
    with open(log, "w") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=as_at_a_terminal)
        try:
            code = process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            code = None
        # Silent at the budget (still importing on a busy machine): wait for its first output,
        # so that a command is stopped only once it has shown that it started its work.
        waited = time.monotonic()
        while code is None and not log.read_text().strip():
            if time.monotonic() - waited > FIRST_OUTPUT_LIMIT:
                break
            time.sleep(0.5)
            code = process.poll()
    outcome = Outcome(log.read_text(), code)
    if code is None:
        stopped = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        try:
            outcome.stop_code = process.wait(timeout=STOP_GRACE)
            outcome.stop_seconds = time.monotonic() - stopped
        except subprocess.TimeoutExpired:
            pass
        outcome.after_stop = log.read_text()[len(outcome.output):]
    try:  # whatever it started in its own process group (data loaders, compile workers)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    return outcome


def params():
    for command in COMMANDS:
        special = SPECIAL.get(command)
        marks = ()
        if special and special.known_bug:
            marks = pytest.mark.xfail(strict=True, reason=f"known bug: {special.known_bug}")
        yield pytest.param(command, marks=marks, id=command[len("planet "):][:60])


@pytest.mark.slow
@pytest.mark.parametrize("command", list(params()))
def test_readme_command(command: str, workdir: Path, request):
    special = SPECIAL.get(command, Special("as written, default budget"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if special.display:
        env["DISPLAY"] = request.getfixturevalue("xvfb_display")
    argv = [planet_executable(), *shlex.split(command)[1:], *special.extra]
    started = time.time()
    outcome = run_with_budget(argv, workdir, env, special.budget)
    took = time.time() - started
    code, output = outcome.code, outcome.output
    shown = f"$ {shlex.join(argv[1:])}\n(exit {code}, {took:.0f} s)\n{output[-3000:]}"
    if special.must_finish:
        assert code == 0, f"must exit 0 within {special.budget:.0f} s: {shown}"
    else:
        assert code in (0, None), shown
    assert not ERROR.search(output), shown
    if code is None:
        assert output.strip(), f"printed nothing before it was stopped: {shown}"
        # Ctrl-C is answered at once
        assert outcome.stop_seconds is not None, (
            f"still running {STOP_GRACE:.0f} s after Ctrl-C: {shown}{outcome.after_stop}")
        # and answered as planet answers it: exit 130 and a line saying it was interrupted (a
        # traceback here is a crash in its interrupt handling)
        stopped = f"{shown}\n--- after Ctrl-C (exit {outcome.stop_code}):\n{outcome.after_stop}"
        assert outcome.stop_code == 130, stopped
        assert "interrupted" in outcome.after_stop, stopped
        assert not ERROR.search(outcome.after_stop), stopped
        print(f"stopped {outcome.stop_seconds:.1f} s after Ctrl-C: {outcome.after_stop[-300:]}")


PYTHON_RESULT = re.compile(r"^return (-?\d+\.\d), agent trained on (\d+) env steps$", re.M)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks(ROOT / "README.md"))))
def test_readme_python(index: int, workdir: Path):
    """The Python example plays one noise-free episode with the agent of
    runs/cartpole-swingup/cpu-s0, which the README's commands wrote: whole cartpole-swingup
    episodes of 1000 env steps, with a reward of at most 1 per step."""
    if not (workdir / "runs/cartpole-swingup/cpu-s0/checkpoints").exists():
        pytest.fail("the README's training commands wrote no runs/cartpole-swingup/cpu-s0 "
                    "checkpoint (see their tests)")
    block = python_blocks(ROOT / "README.md")[index]
    script = workdir / f"readme_python_{index}.py"
    script.write_text(block)
    result = subprocess.run([sys.executable, script.name], cwd=workdir, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    shown = f"{block}\n(exit {result.returncode})\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    assert result.returncode == 0, shown
    found = PYTHON_RESULT.search(result.stdout)
    assert found, f"no 'return R, agent trained on N env steps' line: {shown}"
    assert 0.0 <= float(found[1]) <= 1000.0, shown
    assert int(found[2]) > 0 and int(found[2]) % 1000 == 0, shown


def test_lists_match_the_readme():
    lines = readme_lines(ROOT / "README.md")
    others = [line for line in lines if not line.startswith("planet ")]
    assert sorted(others) == sorted(NOT_PLANET), "a bash line that is neither run nor listed"
    stale = [command for command in SPECIAL if command not in COMMANDS]
    assert not stale, f"SPECIAL names commands the README no longer has: {stale}"
    assert COMMANDS, "no planet commands found in README.md"


@pytest.mark.slow  # it reads what the slow README commands above wrote
def test_tensorboard_logdir_holds_events(workdir: Path):
    """The README's `tensorboard --logdir runs` line: the runs above wrote event files there."""
    if not (workdir / "runs").exists():
        pytest.fail("the README's training commands wrote no runs/ folder (see their tests)")
    assert list((workdir / "runs").glob("*/*/tb/events.out.tfevents.*"))


def test_chinese_readme_matches():
    english = readme_lines(ROOT / "README.md")
    chinese = readme_lines(ROOT / "README.zh-CN.md")
    assert chinese == english, "README.zh-CN.md's commands differ from README.md's"
    assert python_blocks(ROOT / "README.zh-CN.md") == python_blocks(ROOT / "README.md"), (
        "README.zh-CN.md's Python blocks differ from README.md's")
    assert python_blocks(ROOT / "README.md"), "no ```python block found in README.md"


SIX_TASKS = ROOT / "results" / "six-tasks-100k"
RUNS_DONE = {"README.md": r"\*\*(\d+) of (\d+) runs\*\*",
             "README.zh-CN.md": r"\*\*(\d+) / (\d+) 个运行\*\*"}


@pytest.mark.parametrize("readme", sorted(RUNS_DONE))
def test_six_task_table_is_the_committed_reports(readme: str):
    """The README's 100k table is the committed report's, line for line, and the count of
    finished runs beside it is the report's."""
    text = (ROOT / readme).read_text()
    report = (SIX_TASKS / "report.md").read_text()
    section = report.split("## At 100,000 env steps\n\n", 1)[1]
    table = section.split("\n\n", 1)[0]
    assert table.startswith("| task |") and table.count("\n") >= 7, table
    assert f"\n\n{table}\n\n" in text, f"{readme}'s 100k table differs from report.md's:\n{table}"
    groups = json.loads((SIX_TASKS / "report.json").read_text())["groups"]
    runs = sum(len(group["runs"]) for group in groups)
    finished = runs - sum(len(group["unfinished"]) for group in groups)
    found = re.search(RUNS_DONE[readme], text)
    assert found, f"{readme} does not say how many runs have finished"
    assert (int(found[1]), int(found[2])) == (finished, runs), found[0]


def test_setup_refuses_an_unknown_mode_before_installing_anything(tmp_path):
    """A typo (`./setup.sh tset`) stops at once with the usage line: no apt-get, no pip."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "setup.sh", copy / "setup.sh")
    result = subprocess.run(["bash", str(copy / "setup.sh"), "tset"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "[setup] usage: ./setup.sh [install|train|test] [args...]"
    assert sorted(path.name for path in copy.iterdir()) == ["setup.sh"]  # no .venv made
