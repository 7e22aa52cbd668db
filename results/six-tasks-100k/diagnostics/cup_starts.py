"""ball_in_cup-catch: how much return comes from starts where the ball drops into the cup by
itself, and which training episodes were real catches. No checkpoint is needed.

    .venv/bin/python results/six-tasks-100k/diagnostics/cup_starts.py \
        results/six-tasks-100k/runs/ball_in_cup-catch/s0 \
        results/six-tasks-100k/runs/ball_in_cup-catch/s1 \
        --starts 200 --out results/six-tasks-100k/diagnostics/ball_in_cup-catch-starts

The reward is 1 per env step while the ball is in the cup (1000 env steps per episode). Part 1
holds the cup still (zero actions) from `--starts` initial states (task seeds 0, 1, ...) and
counts the episodes that score anyway: the ball starts above the cup and falls in. Part 2 sorts
each run's training episodes (metrics.jsonl: the seed episodes random, the rest with exploration
noise) into no reward, a catch (some reward, below HELD) and held (HELD or more: in the cup from
about the first 150 env steps, by itself or by a quick catch), and finds the first episode that
starts 10 in a row with COMMON or more catches.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

ENV_STEPS = 1000
HELD = 850  # a return this high means the ball was in the cup from about the first 150 steps
COMMON = 5  # catches among 10 consecutive episodes from which "the run catches" counts


def still_cup_returns(starts: int) -> list[float]:
    """Return of each start with zero actions for the whole episode."""
    from dm_control import suite

    returns = []
    for seed in range(starts):
        env = suite.load("ball_in_cup", "catch", task_kwargs={"random": seed})
        env.reset()
        returns.append(float(sum(env.step(np.zeros(2)).reward for _ in range(ENV_STEPS))))
    return returns


def training_episodes(run_dir: Path) -> list[float]:
    """Returns of the run's collected episodes, in order (the random seed episodes included)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [float(record["return"]) for record in records]


def sort_episodes(returns: list[float]) -> dict:
    """Counts of each kind, and the first episode from which 10 in a row hold COMMON catches."""
    kinds = ["none" if value == 0 else "held" if value >= HELD else "catch" for value in returns]
    catches = np.array([kind == "catch" for kind in kinds], int)
    windows = np.convolve(catches, np.ones(10, int), mode="valid")  # catches in episodes i..i+9
    common = np.flatnonzero(windows >= COMMON)
    return {"episodes": len(returns), "none": kinds.count("none"), "held": kinds.count("held"),
            "catch": kinds.count("catch"),
            "catches_common_from_episode": int(common[0]) if len(common) else None,
            "kinds": kinds}


def draw(still: list[float], runs: dict[str, list[float]], path: Path) -> None:
    figure = Figure(figsize=(11, 2.2 + 2.2 * len(runs)))
    grid = figure.add_gridspec(len(runs), 2, width_ratios=[1, 2.2])
    left = figure.add_subplot(grid[:, 0])
    left.hist(still, bins=np.linspace(0, ENV_STEPS, 21), color="gray")
    left.set_xlabel("return with the cup held still")
    left.set_ylabel("starts")
    scored = sum(value > 0 for value in still)
    left.set_title(f"{scored} of {len(still)} starts score without moving")
    colors = {"none": "lightgray", "catch": "tab:blue", "held": "tab:orange"}
    for row, (name, returns) in enumerate(runs.items()):
        axes = figure.add_subplot(grid[row, 1])
        sorted_episodes = sort_episodes(returns)
        kinds = sorted_episodes["kinds"]
        axes.scatter(range(len(returns)), returns, s=12, c=[colors[kind] for kind in kinds])
        for kind, color in colors.items():
            axes.scatter([], [], c=color, s=12, label=f"{kinds.count(kind)} {kind}")
        common = sorted_episodes["catches_common_from_episode"]
        if common is not None:
            axes.axvline(common, color="tab:blue", linestyle="--", linewidth=1,
                         label=f"catches common from {common}")
        axes.axhline(HELD, color="tab:orange", linestyle=":", linewidth=1)
        axes.set_ylabel("return")
        axes.set_title(f"{name}: training episodes (seed episodes random, then exploration noise)")
        axes.legend(fontsize=8, loc="center left")
        axes.grid(alpha=0.3)
    axes.set_xlabel("training episode")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.png")
    args = parser.parse_args()
    still = still_cup_returns(args.starts)
    runs = {run_dir.name: training_episodes(run_dir) for run_dir in args.run_dirs}
    summary = {
        "still_cup": {"starts": len(still), "scoring": int(sum(v > 0 for v in still)),
                      "mean_return": round(float(np.mean(still)), 1),
                      "scoring_returns": sorted(round(v) for v in still if v > 0)},
        "runs": {name: {key: value for key, value in sort_episodes(returns).items()
                        if key != "kinds"} | {"run_dir": str(run_dir)}
                 for (name, returns), run_dir in zip(runs.items(), args.run_dirs, strict=True)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    draw(still, runs, args.out.with_suffix(".png"))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
