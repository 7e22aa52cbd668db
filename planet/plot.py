"""Plot return versus env steps for one or more runs, with the paper's numbers as references.

    planet plot RUN_DIR [RUN_DIR ...] [--out curve.png] [--width 1000 --height 600]

Reads each run's metrics.jsonl: `return` of every collected episode (thin line: training
episodes, with exploration noise; the seed episodes are random) and `eval_return` (+- std) of the
noise-free evaluations (markers). Env steps count action repeats, as in the paper.

References (planet.references), per task of the runs: the paper's Table 1 return after 1,000
episodes (dashed line), and PlaNet's return at 100k and 500k env steps (from the CURL paper),
drawn as markers when the runs reach at least half of that many steps. The step axis ends just
past the runs and the markers drawn, so a 100k run is not squeezed into a 500k axis.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from planet.errors import TrainError, UsageError
from planet.figures import save_figure
from planet.logging import read_metrics
from planet.references import planet_returns, reference_steps_shown
from planet.run_files import load_run_config, refuse_run_files
from planet.tasks import task_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders to plot")
    parser.add_argument("--out", default="curve.png", help="PNG to write (default curve.png)")
    parser.add_argument("--width", type=int, default=1000, help="image width in pixels")
    parser.add_argument("--height", type=int, default=600, help="image height in pixels")
    parser.add_argument("--no-train", action="store_true",
                        help="draw only the evaluation returns")


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Per run, the fewest last path parts (two at least) that tell the runs apart: two sweeps'
    'walker-walk/s1' become 'sweep-a/walker-walk/s1' and 'sweep-b/walker-walk/s1'."""
    parts = [run_dir.resolve().parts for run_dir in run_dirs]
    for count in range(2, max(map(len, parts)) + 1):
        labels = ["/".join(path[-count:]) for path in parts]
        if len(set(labels)) == len(labels):
            return labels
    return ["/".join(path) for path in parts]  # the same folder twice


def warn_on_stderr(message: str) -> None:
    print(f"planet plot: {message}", file=sys.stderr)


def load_curves(run_dir: Path, label: str) -> dict:
    """A run's task, its legend `label`, and its train and eval returns against env steps."""
    config = load_run_config(run_dir)
    records = read_metrics(run_dir, warn=warn_on_stderr)
    if not records:
        raise TrainError(f"no metrics in {run_dir / 'metrics.jsonl'}; has the run trained?")
    train = [(r["env_steps"], r["return"]) for r in records if "return" in r]
    evals = [(r["env_steps"], r["eval_return"], r.get("eval_return_std", 0.0))
             for r in records if "eval_return" in r]
    return {"task": task_of(config.env.name), "label": label,
            "train": np.array(train, float).reshape(-1, 2),
            "eval": np.array(evals, float).reshape(-1, 3)}


def plot_runs(runs: list[dict], out: Path, width: int, height: int, train: bool = True) -> None:
    # Saved as sized (no tight bounding box): the PNG is exactly width x height.
    save_figure(draw_runs(runs, width, height, train), out)


def draw_runs(runs: list[dict], width: int, height: int, train: bool = True):
    """The figure `plot_runs` saves: one axes, width x height pixels at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, ax = plt.subplots(figsize=(width / dpi, height / dpi), dpi=dpi)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    max_steps = max(float(np.max(run["train"][:, 0], initial=0)) for run in runs)
    for index, run in enumerate(runs):
        color = colors[index % len(colors)]
        if train and len(run["train"]):
            ax.plot(run["train"][:, 0], run["train"][:, 1], color=color, alpha=0.45,
                    linewidth=1, label=f"{run['label']}: train episodes")
        if len(run["eval"]):
            steps, mean, std = run["eval"].T
            ax.plot(steps, mean, "o-", color=color, markersize=4, linewidth=1.8,
                    label=f"{run['label']}: eval (no noise)")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
    for index, task in enumerate(sorted({run["task"] for run in runs})):
        reference = planet_returns(task)
        if not reference:
            continue
        color = "black" if index == 0 else colors[(index + 3) % len(colors)]
        ax.axhline(reference["table1"], color=color, linestyle="--", linewidth=1.2,
                   label=f"{task}: PlaNet paper, Table 1 (1M steps): {reference['table1']}")
        for steps in reference_steps_shown(max_steps):
            key, marker = f"{steps // 1000}k", "s" if steps == 100_000 else "D"
            ax.plot([steps], [reference[key]], marker=marker, color=color, markersize=8,
                    linestyle="none", label=f"{task}: PlaNet at {key} steps: {reference[key]}")
    ax.set_xlabel("env steps (action repeat included)")
    ax.set_ylabel("episode return")
    tasks = ", ".join(sorted({run["task"] for run in runs}))
    ax.set_title(f"return vs env steps: {tasks}")
    ax.grid(alpha=0.3)
    ax.set_xlim(0, max([max_steps, *reference_steps_shown(max_steps)]) * 1.04 or 1.0)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def main(args: argparse.Namespace) -> int:
    if args.width < 200 or args.height < 150:
        raise UsageError("--width must be at least 200 and --height at least 150 pixels")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out must be a .png file, got {out}")
    refuse_run_files([("--out", out)])  # a reader: never takes a run's lock
    run_dirs = [Path(run_dir) for run_dir in args.run_dirs]
    runs = [load_curves(run_dir, label)
            for run_dir, label in zip(run_dirs, run_labels(run_dirs), strict=True)]
    plot_runs(runs, out, args.width, args.height, train=not args.no_train)
    print(f"wrote {out} ({args.width}x{args.height}) from {len(runs)} run(s)")
    return 0
