"""The package's import graph: no cycles, and every arrow points down the layers below.

    commands    cli, __main__                       parse arguments, print, exit codes
    tools       evaluate, predict, plot, watch, bench, learning_bench, gpu_check, sweep, report
    running     train, resume, runs, components, episodes, agent, learner, checkpoint,
                run_files, media, predictions, logging, user_errors
    paper       models.*, objectives, planner, data.*, envs.*
    base        config, errors, utils, seeds, tasks, references, fast_paths, run_lock, figures,
                measure, crash_points, atomic_files

A module may import its own layer and the layers below it, never above: the paper's modules
know nothing of how a run is driven, and no library code depends on the command line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "planet"

LAYERS = [
    ["config", "errors", "utils", "seeds", "tasks", "references", "fast_paths", "run_lock",
     "figures", "measure", "crash_points", "atomic_files"],
    ["models", "objectives", "planner", "data", "envs"],
    ["train", "resume", "runs", "components", "episodes", "agent", "learner", "checkpoint",
     "run_files", "media", "predictions", "logging", "user_errors"],
    ["evaluate", "predict", "plot", "watch", "bench", "learning_bench", "gpu_check", "sweep",
     "report"],
    ["cli", "__main__"],
]


def module_names() -> dict[str, Path]:
    """'planet.models.rssm' -> its file, for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its file (functions included)."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t not in (name, "planet"))
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module != "planet" else "config"
    for number, members in enumerate(LAYERS):
        if top in members:
            return number
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: place it")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and sum(map(len, graph.values())) > 60  # the parse found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_import_points_to_the_same_layer_or_below():
    upward = [
        f"{source} ({layer_of(source)}) -> {target} ({layer_of(target)})"
        for source, targets in sorted(import_graph().items()) for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]
    assert upward == []


def test_only_the_command_line_imports_the_command_line():
    users = sorted(source for source, targets in import_graph().items() if "planet.cli" in targets)
    assert users == ["planet.__main__"]


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": set(), "c": {"c2"}, "c2": {"c"}}, ["c", "c2", "c"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_finds_cycles_and_only_cycles(graph, cycle):
    assert find_cycle(graph) == cycle


def test_the_public_api_resolves_and_import_planet_stays_light():
    """`import planet` loads neither torch nor the envs; each name of planet.__all__ then
    resolves to the object its module defines."""
    script = (
        "import sys, planet\n"
        "print(sorted(m for m in ('torch', 'gymnasium', 'dm_control') if m in sys.modules))\n"
        "for name in planet.__all__:\n"
        "    value = getattr(planet, name)\n"
        "    print(name, getattr(value, '__module__', type(value).__name__))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == "[]", result.stdout
    assert lines[1:] == ["Agent planet.agent", "Config planet.config", "load_run planet.runs",
                         "make_config planet.config", "make_env planet.envs",
                         "__version__ str"], result.stdout
    with pytest.raises(AttributeError, match="no attribute 'load_runs'"):
        import planet

        planet.load_runs  # noqa: B018


def test_names_and_config_are_readable_without_torch_or_gymnasium():
    """planet bench on a GPU machine with PyTorch alone, and the command line's first check of
    an env name, read planet.tasks, planet.errors and planet.config: none may pull in torch or
    the envs."""
    script = ("import sys, planet.tasks, planet.errors, planet.config\n"
              "planet.tasks.parse_env_name('walker-walk')\n"
              "print(sorted(m for m in ('torch', 'gymnasium', 'dm_control') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout
