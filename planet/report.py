"""Tabulate a sweep against the published numbers: Markdown, JSON and a figure.

    planet report SWEEP_DIR [--at-env-steps 100000,500000] [--out SWEEP_DIR/report]

For each task (and grid value) and each requested env-step count S, every run contributes the mean
return of its last noise-free evaluation at or before S (no interpolation); runs without one (S not
reached yet, or first evaluated later) are left out of that cell, and the cell says how many seeds
it holds. The mean and the standard deviation (ddof 0) are over those runs. Published figures for
the same S (planet.references) sit beside them, and so does a random policy's return: the mean over
the runs' seed episodes, which act uniformly at random in the same env (same action repeat and
episode length); a last table sets each task against it at the last step count (margins of the mean
and of the lowest seed, seeds above its mean plus one std). The figure has one panel per task: each
seed's evaluation return against env steps (thin), their mean and min-max band up to the step count
every seed has reached (bold), the references as markers and the random policy as a dashed line.
Runs that have not finished (still training, stopped or failed) are included up to where they are,
and marked so.

Runs are grouped by task and grid value. A folder without sweep.json (say, `runs/`) has no grid:
there, runs of one task whose configs differ beyond the seed and the fields a resume may change
are told apart by those differences (the preset, or the fields set), never averaged as seeds.

Writes OUT.md, OUT.json and OUT.png (default: report.* inside the sweep folder). The Markdown
and the JSON name the commands they come from: the sweep's own (from sweep.json, when the folder
holds one) and this report's.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planet.errors import TrainError, UsageError
from planet.figures import save_figure
from planet.logging import read_metrics
from planet.references import REFERENCES, TASKS, references_at
from planet.tasks import task_of

METHOD = ("mean over seeds of each run's last noise-free evaluation at or before the step "
          "count (no interpolation); std over seeds with ddof 0; runs without one (not there "
          "yet, or first evaluated later) are left out of it")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR",
                        help="a sweep folder (planet sweep --out), or any folder of run folders")
    parser.add_argument("--at-env-steps", default="100000,500000",
                        help="comma-separated env-step counts for the table "
                        "(default 100000,500000)")
    parser.add_argument("--out", help="path without suffix for .md, .json and .png "
                        "(default SWEEP_DIR/report)")


@dataclass
class Run:
    name: str
    task: str
    grid: str  # 'planner.candidates=100' or ''
    target_episodes: int
    evals: list[tuple[int, float]]  # (env steps, eval return), in order
    wall: list[tuple[int, float]]  # (env steps, seconds since the run started), per episode
    env_steps: int  # reached so far
    episodes: int  # collected so far
    random_returns: list[float] = field(default_factory=list)  # of its uniform-random episodes

    @property
    def unfinished(self) -> bool:
        return self.episodes < self.target_episodes


@dataclass
class Group:
    task: str
    grid: str
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return group_label(self.task, self.grid)


def group_label(task: str, grid: str) -> str:
    """A table row's name: 'walker-walk', or 'walker-walk [train.free_nats=1]' in a grid."""
    return f"{task} [{grid}]" if grid else task


def load_runs(sweep_dir: Path) -> list[Run]:
    """The sweep's runs (sweep.json), or every folder below SWEEP_DIR with a config.json."""
    from planet.config import Config

    sweep_file = sweep_dir / "sweep.json"
    if sweep_file.exists():
        try:
            listed = json.loads(sweep_file.read_text())["runs"]
            entries = [(name, dict(entry.get("grid", {})), entry["config"])
                       for name, entry in listed.items()]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise TrainError(f"cannot read {sweep_file}: {error!r}") from None
    else:
        entries = [(path.parent.relative_to(sweep_dir).as_posix(), None, None)
                   for path in sorted(sweep_dir.rglob("config.json"))]
    if not entries:
        raise TrainError(f"{sweep_dir} holds no runs (no sweep.json and no config.json below it)")
    runs, configs = [], []
    for name, grid, planned in entries:
        run_dir = sweep_dir / name
        config_path = run_dir / "config.json"
        try:  # a run the sweep has not started yet has only its planned config
            config = Config.load(config_path) if config_path.exists() else Config.from_dict(
                planned)
            # The sweep's plan says how far a run goes: `--episodes` may have been raised since
            # the run's own config.json was written.
            target = Config.from_dict(planned).train.episodes if planned else config.train.episodes
        except (ValueError, TypeError, AttributeError) as error:
            raise TrainError(f"cannot read the config of {run_dir}: {error}") from None
        records = read_metrics(run_dir, warn=lambda message: None)  # a half line is skipped
        evals = [(int(r["env_steps"]), float(r["eval_return"])) for r in records
                 if "eval_return" in r]
        configs.append(config)
        runs.append(Run(
            name=name, task=task_of(config.env.name),
            grid=",".join(f"{key}={value}" for key, value in (grid or {}).items()),
            target_episodes=target, evals=evals,
            wall=[(int(r["env_steps"]), float(r["wall_time"])) for r in records
                  if "wall_time" in r],
            env_steps=max((int(r["env_steps"]) for r in records), default=0),
            episodes=len({r["episode"] for r in records}),
            random_returns=[float(r["return"]) for r in records if r.get("random_policy")],
        ))
    if not sweep_file.exists():
        for run, label in zip(runs, config_labels(runs, configs), strict=True):
            run.grid = label
    return runs


def config_labels(runs: list[Run], configs: list) -> list[str]:
    """For runs without a sweep's grid: per run, the config fields in which the runs of its
    task differ, beyond the seed and the fields a resume may change ('' where they agree).
    A preset stands for the fields it sets; a field set on top of it is named too."""
    from planet.config import flatten
    from planet.resume import RESUMABLE_FIELDS

    ignored = {"seed", *RESUMABLE_FIELDS} - {"preset"}  # kept: it names where fields came from
    flat = [{key: value for key, value in flatten(config.to_dict()).items()
             if key not in ignored} for config in configs]

    def differing(keys, members: list[int]) -> list[str]:
        return sorted(key for key in keys if len({repr(flat[i].get(key)) for i in members}) > 1)

    labels = [""] * len(runs)
    for task in {run.task for run in runs}:
        members = [index for index, run in enumerate(runs) if run.task == task]
        keys = differing(flat[members[0]], members)
        if "preset" in keys:
            by_preset: dict[str, list[int]] = {}
            for index in members:
                by_preset.setdefault(flat[index]["preset"], []).append(index)
            keys = ["preset", *sorted({key for group in by_preset.values()
                                       for key in differing(keys, group)})]
        for index in members:
            labels[index] = ",".join(f"{key}={flat[index].get(key)}" for key in keys)
    return labels


def group_runs(runs: list[Run]) -> list[Group]:
    order = {task: index for index, task in enumerate(TASKS)}
    groups: dict[tuple[str, str], Group] = {}
    for run in runs:
        groups.setdefault((run.task, run.grid), Group(run.task, run.grid)).runs.append(run)
    return sorted(groups.values(), key=lambda g: (order.get(g.task, len(order)), g.task, g.grid))


def value_at(run: Run, env_steps: int) -> tuple[float, int] | None:
    """(return, env steps) of the run's last evaluation at or before `env_steps`, if the run
    has reached `env_steps`."""
    if run.env_steps < env_steps:
        return None
    earlier = [(steps, value) for steps, value in run.evals if steps <= env_steps]
    if not earlier:
        return None
    steps, value = earlier[-1]
    return value, steps


def minutes_at(run: Run, env_steps: int) -> float | None:
    """Wall-clock minutes the run took to reach `env_steps` (evaluations included)."""
    earlier = [seconds for steps, seconds in run.wall if steps <= env_steps]
    return earlier[-1] / 60 if earlier and run.env_steps >= env_steps else None


def random_policy(runs: list[Run]) -> dict[str, Any]:
    """Mean and std (ddof 0) of the return over every seed episode (uniform random actions) of
    the runs, and how many episodes that is."""
    returns = np.array([value for run in runs for value in run.random_returns], float)
    if not len(returns):
        return {"mean": None, "std": None, "episodes": 0}
    return {"mean": float(returns.mean()), "std": float(returns.std()), "episodes": len(returns)}


def against_random(values: np.ndarray, random: dict[str, Any]) -> dict[str, Any] | None:
    """How far the seeds' returns are above the random policy: the mean's and the lowest seed's
    margin, and how many seeds pass the bar of the random mean plus one std of its episodes (a
    seed's return is a mean over evaluation episodes, so this bar is on the strict side)."""
    if not len(values) or random["mean"] is None:
        return None
    bar = random["mean"] + random["std"]
    return {"mean_margin": float(values.mean() - random["mean"]),
            "lowest_margin": float(values.min() - random["mean"]), "bar": bar,
            "seeds_above_bar": int((values > bar).sum()), "seeds": len(values)}


def summarise(groups: list[Group], at_env_steps: list[int]) -> dict[str, Any]:
    """The report's numbers, as written to JSON."""
    rows = []
    for group in groups:
        cells = {}
        random = random_policy(group.runs)
        for steps in at_env_steps:
            found = {run.name: value_at(run, steps) for run in group.runs}
            taken = {name: hit for name, hit in found.items() if hit is not None}
            reached = {run.name for run in group.runs if run.env_steps >= steps}
            values = np.array([value for value, _ in taken.values()], float)
            minutes = [m for run in group.runs if (m := minutes_at(run, steps)) is not None]
            cells[str(steps)] = {
                "vs_random": against_random(values, random),
                "mean": float(values.mean()) if len(values) else None,
                "std": float(values.std()) if len(values) else None,
                "seeds": len(values),
                "returns": {name: value for name, (value, _) in taken.items()},
                "eval_env_steps": {name: at for name, (_, at) in taken.items()},
                "not_reached": sorted(set(found) - reached),
                # reached, but its first evaluation came later (a long test_interval)
                "no_evaluation": sorted(name for name in reached if found[name] is None),
                "wall_minutes": float(np.mean(minutes)) if minutes else None,
            }
        rows.append({
            "task": group.task, "grid": group.grid, "runs": [run.name for run in group.runs],
            "unfinished": {run.name: run.env_steps for run in group.runs if run.unfinished},
            "random_policy": random,
            "at": cells,
            "references": {str(steps): {ref.label: ref.returns.get(group.task)
                                        for ref in references_at(steps)}
                           for steps in at_env_steps},
        })
    return {
        "method": METHOD,
        "at_env_steps": at_env_steps,
        "groups": rows,
        "sources": sorted({ref.source for ref in REFERENCES}),
    }


def rows_of_complete_grids(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """grid -> its rows, for the grids that have a row for every task of the report: a mean
    over tasks means the same tasks for each. Labels that differ per task (runs/ folders,
    config_labels) make no such grid, and no mean row."""
    tasks = {row["task"] for row in summary["groups"]}
    by_grid: dict[str, list[dict[str, Any]]] = {}
    for row in summary["groups"]:
        by_grid.setdefault(row["grid"], []).append(row)
    return {grid: rows for grid, rows in by_grid.items() if {r["task"] for r in rows} == tasks}


def task_means(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean over tasks at each step count, for the grids whose every task has a value."""
    means: dict[str, dict[str, float]] = {}
    complete = rows_of_complete_grids(summary)
    for steps in map(str, summary["at_env_steps"]):
        values = {grid: [row["at"][steps]["mean"] for row in rows]
                  for grid, rows in complete.items()}
        means[steps] = {grid: float(np.mean(row_values))
                        for grid, row_values in values.items() if None not in row_values}
    return means


def random_mean(summary: dict[str, Any], grid: str) -> float | None:
    """Mean over tasks of the random policy's return, for a grid whose every task has one."""
    rows = rows_of_complete_grids(summary).get(grid, [])
    values = [row["random_policy"]["mean"] for row in rows]
    return float(np.mean(values)) if values and None not in values else None


def sweep_command(sweep_dir: Path) -> list[str] | None:
    """The command that made the sweep, as sweep.json recorded it (None without one)."""
    try:
        command = json.loads((sweep_dir / "sweep.json").read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(part) for part in command] if isinstance(command, list) else None


def report_title(sweep_dir: Path, command: list[str] | None) -> str:
    """The sweep's name: its --out folder's, else the folder the report reads."""
    if command and "--out" in command[:-1]:
        return Path(command[command.index("--out") + 1]).name
    return sweep_dir.name


def markdown(summary: dict[str, Any], sweep_dir: Path) -> str:
    commands = summary.get("commands", {})
    lines = [f"# Report: {report_title(sweep_dir, commands.get('sweep'))}", ""]
    if commands.get("sweep"):
        lines += ["Runs made by:", "", "```bash", shlex.join(commands["sweep"]), "```", ""]
    if commands.get("report"):
        lines += ["This report made by:", "", "```bash", shlex.join(commands["report"]), "```",
                  ""]
    lines += [f"Each cell: {summary['method']}. Shown as mean ± std (seeds). Minutes: mean "
              "wall-clock time of the runs to reach the step count on the machine that ran "
              "them, evaluations included. Random policy: mean ± std of the return over the "
              "runs' seed episodes (uniform random actions, same env), with their count.", ""]
    means = task_means(summary)
    for steps in summary["at_env_steps"]:
        key = str(steps)
        refs = references_at(steps)
        lines.append(f"## At {steps:,} env steps")
        lines.append("")
        header = ["task", "this sweep", "minutes", "random policy", *[ref.label for ref in refs]]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for row in summary["groups"]:
            cell = row["at"][key]
            if cell["mean"] is None:
                ours = "no evaluation yet" if cell["no_evaluation"] else "not reached"
            else:
                ours = f"{cell['mean']:.0f} ± {cell['std']:.0f} ({cell['seeds']})"
            if will_change(row, steps):
                ours += " *"
            label = group_label(row["task"], row["grid"])
            values = [_number(row["references"][key].get(ref.label)) for ref in refs]
            lines.append("| " + " | ".join([label, ours, _number(cell["wall_minutes"]),
                                            _random_cell(row["random_policy"]), *values]) + " |")
        for grid, mean in means[key].items():
            label = f"mean over tasks [{grid}]" if grid else "mean over tasks"
            ref_means = [_reference_mean(ref, summary) for ref in refs]
            star = " *" if any(will_change(row, steps) for row in summary["groups"]
                               if row["grid"] == grid) else ""
            lines.append("| " + " | ".join([f"**{label}**", f"**{mean:.0f}**{star}", "",
                                            _number(random_mean(summary, grid)),
                                            *ref_means]) + " |")
        lines.append("")
    lines += random_section(summary)
    unfinished = {name: steps for row in summary["groups"]
                  for name, steps in row["unfinished"].items()}
    if unfinished:
        listed = ", ".join(f"{name} ({f'at {steps:,} steps' if steps else 'not started'})"
                           for name, steps in sorted(unfinished.items()))
        lines.append(f"\\* a value that unfinished runs will still add to. Not finished: {listed}")
        lines.append("")
    lines.append("Sources: " + "; ".join(summary["sources"]) + ".")
    lines.append("")
    return "\n".join(lines)


def will_change(row: dict[str, Any], steps: int) -> bool:
    """Whether a cell at `steps` is not final: a run of its row is unfinished and short of it."""
    return any(reached < steps for reached in row["unfinished"].values())


def random_section(summary: dict[str, Any]) -> list[str]:
    """Markdown: each task against the random policy at the last step count, for judging whether
    it learned: margins of the mean and of the lowest seed, and the seeds above the bar."""
    steps = max(summary["at_env_steps"])
    rows = [(row, row["at"][str(steps)]["vs_random"]) for row in summary["groups"]]
    if not any(vs for _, vs in rows):
        return []
    lines = [f"## Against a random policy at {steps:,} env steps", "",
             "Margins are over the random policy's mean return. The bar is that mean plus one "
             "std of its episodes; each seed's return is already a mean over evaluation "
             "episodes.", "",
             "| task | each seed | random policy | mean − random | lowest seed − random | "
             "seeds above the bar |",
             "|---|---|---|---|---|---|"]
    for row, vs in rows:
        label = group_label(row["task"], row["grid"])
        random = _random_cell(row["random_policy"])
        if vs is None:
            lines.append(f"| {label} | | {random} | | | |")
            continue
        seeds = ", ".join(f"{value:.0f}" for value in row["at"][str(steps)]["returns"].values())
        bar = f"{vs['seeds_above_bar']} of {vs['seeds']} (bar {vs['bar']:.0f})"
        lines.append(f"| {label} | {seeds} | {random} | {vs['mean_margin']:+.0f} | "
                     f"{vs['lowest_margin']:+.0f} | {bar} |")
    return [*lines, ""]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _random_cell(random: dict[str, Any]) -> str:
    if random["mean"] is None:
        return ""
    return f"{random['mean']:.0f} ± {random['std']:.0f} ({random['episodes']})"


def _reference_mean(reference, summary: dict[str, Any]) -> str:
    tasks = {row["task"] for row in summary["groups"]}
    values = [reference.returns[task] for task in tasks if task in reference.returns]
    return f"{np.mean(values):.0f}" if values and len(values) == len(tasks) else ""


def curve(runs: list[Run]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) over the runs that have evaluated, of each one's last evaluation
    at or before each step, where every one of them has a value: from the latest first
    evaluation to the step count all have reached. Past that, a mean over fewer seeds would
    look like the same curve and jump where a seed stops counting."""
    evaluated = [run for run in runs if run.evals]
    if not evaluated:
        return (np.zeros(0),) * 4
    first = max(run.evals[0][0] for run in evaluated)
    common = min(run.env_steps for run in evaluated)
    steps = np.array(sorted({s for run in evaluated for s, _ in run.evals if first <= s <= common}),
                     float)
    values = np.array([[value_at(run, int(step))[0] for run in evaluated] for step in steps])
    values = values.reshape(len(steps), len(evaluated))  # (steps, seeds)
    return steps, values.mean(axis=1), values.min(axis=1), values.max(axis=1)


def figure(groups: list[Group], path: Path, at_env_steps: list[int]) -> None:
    """Draw the report's figure (`draw_figure`) into a PNG at `path`."""
    save_figure(draw_figure(groups, at_env_steps), path, dpi=100)


def draw_figure(groups: list[Group], at_env_steps: list[int]):
    """One panel per task (`draw_panel`), all with the env-step axis from 0 to the report's
    last step count, ticked at the table's step counts ("25k"), so that panels compare at a
    glance, read against the table, and show every reference up to that count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(group.task for group in groups))
    columns = max(1, min(3, len(tasks)))
    rows = max(1, (len(tasks) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.6 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        draw_panel(ax, task, [group for group in groups if group.task == task], at_env_steps)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("noise-free evaluation return: each seed (thin), and the mean and min-max band\n"
                 "over seeds up to the step count all of them have reached (bold)")
    fig.tight_layout()
    return fig


REFERENCE_MARKERS = {"PlaNet (CURL)": "s", "PlaNet (DrQ)": "^", "Dreamer (CURL)": "D",
                     "PlaNet (PlaNet)": "*"}


def draw_panel(ax, task: str, task_groups: list[Group], at_env_steps: list[int]) -> None:
    """One task: per group (grid value), each seed thin and the mean over seeds bold with its
    min-max band; the published returns as markers; the random policy as a dashed line."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    until = max(at_env_steps)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    reach = 0  # the furthest evaluation drawn
    for index, group in enumerate(task_groups):
        evaluated = [run for run in group.runs if run.evals]
        if not evaluated:
            continue
        color = colors[index % len(colors)]
        for run in evaluated:  # each seed, thin, as far as it has gone
            seed_steps, seed_returns = zip(*run.evals, strict=True)
            ax.plot(seed_steps, seed_returns, "-", color=color, linewidth=0.8, alpha=0.5)
            reach = max(reach, max(seed_steps))
        steps, mean, low, high = curve(evaluated)
        unfinished = sum(run.unfinished for run in group.runs)
        label = (group.grid or "this sweep") + f": mean of {len(evaluated)}"
        if len(evaluated) < len(group.runs):
            label += f" of {len(group.runs)}"
        label += " seeds"
        label += f", {unfinished} not finished" if unfinished else ""
        ax.plot(steps, mean, "-o", color=color, linewidth=1.8, markersize=2.5, label=label)
        ax.fill_between(steps, low, high, color=color, alpha=0.15)
    for reference in REFERENCES:
        value = reference.returns.get(task)
        if value is None or reference.env_steps > until or not reach:
            continue
        ax.plot([reference.env_steps], [value], REFERENCE_MARKERS.get(reference.label, "o"),
                color="black", markersize=6, linestyle="none", fillstyle="none",
                label=f"{reference.label} {reference.env_steps // 1000}k: {value:.0f}")
    random = random_policy([run for group in task_groups for run in group.runs])
    if reach and random["mean"] is not None:
        ax.axhline(random["mean"], color="gray", linestyle="--", linewidth=1,
                   label=f"random policy: {random['mean']:.0f}")
    if not reach:
        ax.text(0.5, 0.5, "no evaluation yet", transform=ax.transAxes, ha="center",
                va="center", color="gray")
    ax.set_title(task)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.set_xlim(0, until * 1.04)
    if len(at_env_steps) <= 8:
        ax.set_xticks([0, *at_env_steps])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda steps, _: f"{steps / 1000:g}k"
                                               if steps else "0"))
    ax.grid(alpha=0.3)
    if reach:
        # Below the panel: inside, it hid curves wherever they went.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                  frameon=False)


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--at-env-steps must be integers, got {text!r}") from None
    if not steps or any(step <= 0 for step in steps):
        raise UsageError(f"--at-env-steps must be positive integers, got {text!r}")
    return sorted(set(steps))


def main(args: argparse.Namespace) -> int:
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        raise UsageError(f"{sweep_dir} is not a folder")
    at_env_steps = parse_steps(args.at_env_steps)
    out = Path(args.out) if args.out else sweep_dir / "report"
    if out.name in ("", ".", ".."):
        raise UsageError(f"--out takes a path without suffix (it writes OUT.md, OUT.json and "
                         f"OUT.png), such as {Path(args.out) / 'report'}; got {args.out!r}")
    groups = group_runs(load_runs(sweep_dir))
    summary = summarise(groups, at_env_steps)
    report = ["planet", "report", args.sweep_dir, "--at-env-steps",
              ",".join(map(str, at_env_steps))] + (["--out", args.out] if args.out else [])
    summary["commands"] = {"sweep": sweep_command(sweep_dir), "report": report}
    out.parent.mkdir(parents=True, exist_ok=True)
    md_path, json_path, png_path = (out.with_name(out.name + s) for s in (".md", ".json", ".png"))
    text = markdown(summary, sweep_dir.resolve())
    md_path.write_text(text)
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    figure(groups, png_path, at_env_steps)
    print(text)
    print(f"wrote {md_path}, {json_path}, {png_path}")
    return 0
