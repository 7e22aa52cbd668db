"""What the diagnostic scripts here share: their command line, a run's noise-free episodes played
one by one (episode i with env seed SEED_BASE + i and torch seed i for the planner's CEM noise,
so the files are reproducible), and the summary written as OUT.json beside the figure OUT.png."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from tqdm import tqdm

from planet import load_run


def command_line(doc: str, episodes: int) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, default=episodes)
    parser.add_argument("--seed-base", type=int, default=50_000)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.png")
    return parser, parser.parse_args()


def play_episodes(parser: argparse.ArgumentParser, args: argparse.Namespace, task: str,
                  play: Callable) -> tuple[object, list[dict]]:
    """Load RUN_DIR (a `task` run) and return (run, one record of `play(run, env, env_seed,
    torch_seed)` per episode)."""
    run = load_run(args.run_dir)
    if not run.config.env.name.endswith(task):
        parser.error(f"{args.run_dir} is a {run.config.env.name} run, not {task}")
    env = run.components.env
    episodes = [play(run, env, args.seed_base + i, i)
                for i in tqdm(range(args.episodes), desc="episodes")]
    return run, episodes


def physics_of(env):
    """The MuJoCo physics behind planet's wrappers and shimmy's dm_control wrapper."""
    return env.unwrapped._env.physics


def write_summary(run, args: argparse.Namespace, episodes: list[dict], indent: int | None,
                  **figures) -> dict:
    """OUT.json: where the episodes come from, their mean return, `figures`, every episode."""
    summary = {
        "run_dir": str(args.run_dir),
        "checkpoint": str(run.checkpoint),
        "env_steps_trained": run.env_steps,
        "episodes": len(episodes),
        "mean_return": round(float(np.mean([e["return"] for e in episodes])), 1),
        **figures,
        "episode_list": episodes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=indent) + "\n")
    return summary


def traces_by_return(axes, episodes: list[dict], per_step: list, ylabel: str) -> None:
    """One line per episode of its per-step values (`per_step[i]` for episode i), coloured by the
    episode's return (viridis: brightest the best), with the returns as the legend."""
    top = max(e["return"] for e in episodes) or 1.0
    colours = colormaps["viridis"]
    for e, values in zip(episodes, per_step, strict=True):
        axes.plot(values, lw=0.8, color=colours(e["return"] / top), label=f"{e['return']:.0f}")
    axes.set_xlabel("agent step")
    axes.set_ylabel(ylabel)
    axes.legend(title="return", fontsize=7, ncol=2, loc="upper left")


def return_against(axes, values, episodes: list[dict], label: str, title: str, **style) -> None:
    """A scatter of each episode's return against one of its figures."""
    axes.scatter(values, [e["return"] for e in episodes], **style)
    axes.set_xlabel(label)
    axes.set_ylabel("return")
    axes.set_title(title)
    axes.grid(alpha=0.3)


def save_figure(figure, title: str, path: Path) -> None:
    """Title, layout and PNG of a matplotlib Figure (no pyplot, so no GUI backend)."""
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
