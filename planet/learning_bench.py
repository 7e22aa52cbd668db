"""Learning benchmark: train for a wall-clock budget, evaluate the noise-free policy at fixed times.

`planet bench-learning --preset cpu --env cartpole-swingup --seed 0 --minutes 60` trains in
OUT/run (OUT default runs/learning/<env>-<preset>-s<seed>) and, each time the training wall
time passes a multiple of `--eval-every` minutes, runs `--eval-episodes` noise-free episodes as
one batch of envs. Evaluation time is not counted in the budget. It writes `learning.json`
(return vs training minutes vs env steps vs episodes) and `learning.png` (the curve, with the
paper's numbers for the task as reference lines) next to the run folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from planet.figures import save_figure
from planet.references import planet_returns, reference_steps_shown
from planet.tasks import env_folder_name, task_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="cartpole-swingup", help="task (default cartpole-swingup)")
    parser.add_argument("--preset", default="auto",
                        help="preset(s) to train with (default auto: paper on a CUDA device, "
                        "else cpu)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="training wall-clock budget (default 60)")
    parser.add_argument("--eval-every", type=float, default=10.0, metavar="MINUTES",
                        help="evaluate each time training time passes a multiple of this "
                        "(default 10)")
    parser.add_argument("--eval-episodes", type=int, default=5,
                        help="noise-free episodes per evaluation (1 to 100; default 5)")
    parser.add_argument("--out", help="output folder "
                        "(default runs/learning/<env>-<preset>-s<seed>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field")
    parser.add_argument("--no-progress", action="store_true")


def default_out(env_name: str, preset: str, seed: int) -> Path:
    """runs/learning/<env>-<preset>-s<seed>, one folder whatever the env name holds
    ('gym:dm_control/cartpole-swingup-v0') and however many presets are combined ('cpu,fast')."""
    # Not results/: the committed curves live there, and a second run into a folder is refused.
    return (Path("runs") / "learning"
            / f"{env_folder_name(env_name)}-{preset.replace(',', '+')}-s{seed}")


# Evaluation number k of a learning benchmark seeds its episodes with indices 10000 + 100 k + i
# on Stream.EVALUATE: clear of the indices 0 .. N-1 that `planet evaluate --episodes N` uses.
BENCH_EVAL_OFFSET = 10_000
MAX_EVAL_EPISODES = 100  # so that evaluations never share an index


def bench_eval_returns(config, agent, count: int, index: int) -> list[float]:
    """Returns of evaluation number `index`: `count` noise-free episodes as one batch."""
    from planet.episodes import run_test_episodes
    from planet.seeds import Stream, episode_seed

    seeds = [episode_seed(config.seed, BENCH_EVAL_OFFSET + index * MAX_EVAL_EPISODES + i,
                          Stream.EVALUATE) for i in range(count)]
    return [float(e["reward"].sum()) for e in run_test_episodes(config, agent, seeds)]


class TimedEvaluations:
    """train()'s on_episode: evaluates each time the training time (wall time less the time of
    the evaluations themselves) passes a multiple of `interval_s`, and once more when the
    budget is spent, which stops training. `points` holds one record per evaluation."""

    def __init__(self, config, budget_s: float, interval_s: float, episodes: int):
        self.config, self.budget_s, self.interval_s = config, budget_s, interval_s
        self.episodes = episodes
        self.points: list[dict] = []
        self.eval_seconds = 0.0  # spent evaluating so far: not training time
        self.next_at = interval_s  # training seconds at which the next evaluation is due

    def __call__(self, record: dict, components) -> bool:
        train_seconds = record["wall_time"] - self.eval_seconds
        stop = train_seconds >= self.budget_s
        if train_seconds >= self.next_at or stop:
            self.points.append(self.evaluate(record, components, train_seconds))
            while self.next_at <= train_seconds:
                self.next_at += self.interval_s
        return stop

    def evaluate(self, record: dict, components, train_seconds: float) -> dict:
        """Evaluation number len(points): noise-free episodes as one batch, on their own
        RNG stream (the planner's samples), so that evaluating does not change training."""
        from planet.seeds import Stream, episode_seed, private_rng

        start, index = time.time(), len(self.points)
        seed = episode_seed(self.config.seed, index, Stream.BENCH_EVAL_RNG)
        with private_rng(components.device, seed):
            returns = bench_eval_returns(self.config, components.agent, self.episodes, index)
        self.eval_seconds += time.time() - start
        print(f"[{train_seconds / 60:5.1f} min] episodes {record['episode'] + 1}, "
              f"env steps {record['env_steps']}: eval return {np.mean(returns):.1f} "
              f"± {np.std(returns):.1f}", flush=True)
        return {
            "train_minutes": train_seconds / 60, "env_steps": record["env_steps"],
            "episodes": record["episode"] + 1, "eval_returns": returns,
            "eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
            "train_return": record["return"],
        }


def command_line(args: argparse.Namespace, preset: str) -> str:
    """The command with every value spelt out (defaults included), as learning.json records
    it: run again, it repeats the benchmark."""
    values = (("env", args.env), ("preset", preset), ("seed", args.seed),
              ("minutes", args.minutes), ("eval_every", args.eval_every),
              ("eval_episodes", args.eval_episodes))
    return ("planet bench-learning "
            + " ".join(f"--{key.replace('_', '-')} {value}" for key, value in values)
            + (f" --device {args.device}" if args.device else "")
            + (f" --out {args.out}" if args.out else "")
            + "".join(f" --set {item}" for item in args.set))


def run(args: argparse.Namespace) -> dict:
    from planet.config import ConfigError, make_config, parse_assignments
    from planet.train import train
    from planet.utils import choose_device

    if args.minutes <= 0 or args.eval_every <= 0 or args.eval_episodes <= 0:
        raise ConfigError("--minutes, --eval-every and --eval-episodes must be positive")
    if args.eval_episodes > MAX_EVAL_EPISODES:
        raise ConfigError(f"--eval-episodes must be at most {MAX_EVAL_EPISODES}")
    overrides = {"env.name": args.env, "seed": args.seed, "train.test_interval": 0,
                 "train.episodes": 100_000}  # the clock, not the episode count, ends the run
    if args.device:
        overrides["device"] = args.device
    overrides.update(parse_assignments(args.set))
    config = make_config(args.preset, overrides)
    choose_device(config.device)  # a bad --device fails here, before the output folder exists
    out = Path(args.out) if args.out else default_out(args.env, config.preset, args.seed)
    if (out / "run").exists() or (out / "learning.json").exists():
        # train() would resume the run, and the curve would restart at its first point.
        raise ConfigError(f"{out} holds a learning benchmark already; the benchmark times a "
                          "run from its start: use another --out, or delete that folder")
    out.mkdir(parents=True, exist_ok=True)
    evaluations = TimedEvaluations(config, args.minutes * 60, args.eval_every * 60,
                                   args.eval_episodes)
    train(config, out / "run", progress=not args.no_progress, on_episode=evaluations)
    summary = {
        "env": args.env, "preset": config.preset, "seed": args.seed, "minutes": args.minutes,
        "eval_every_minutes": args.eval_every, "eval_episodes": args.eval_episodes,
        "config": config.to_dict(), "points": evaluations.points,
        "references": planet_returns(task_of(args.env)),
        "command": command_line(args, config.preset),
    }
    (out / "learning.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_learning([summary], out / "learning.png")
    return summary


def plot_learning(summaries: list[dict], path: Path) -> None:
    """Eval return vs training minutes (left) and vs env steps (right), with references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_steps) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for summary in summaries:
        points = summary["points"]
        label = f"{summary['preset']} seed {summary['seed']}"
        minutes = [p["train_minutes"] for p in points]
        steps = [p["env_steps"] for p in points]
        means = np.array([p["eval_return"] for p in points])
        stds = np.array([p["eval_return_std"] for p in points])
        for axis, xs in ((by_time, minutes), (by_steps, steps)):
            line, = axis.plot(xs, means, marker="o", label=label)
            axis.fill_between(xs, means - stds, means + stds, alpha=0.15, color=line.get_color())
    references = summaries[0].get("references", {})
    if "table1" in references:
        for axis in (by_time, by_steps):
            axis.axhline(references["table1"], color="grey", linestyle="--",
                         label=f"paper Table 1 (1000 episodes): {references['table1']}")
    reached = max((p["env_steps"] for s in summaries for p in s["points"]), default=0)
    for steps in reference_steps_shown(reached):
        key = f"{steps // 1000}k"
        if key in references:
            by_steps.scatter([steps], [references[key]], marker="x", color="black", zorder=5,
                             label=f"PlaNet at {key} steps: {references[key]}")
    by_time.set_xlabel("training wall time (minutes)")
    by_steps.set_xlabel("env steps")
    for axis in (by_time, by_steps):
        axis.set_ylabel("noise-free eval return")
        axis.grid(alpha=0.3)
    by_steps.legend(fontsize=8, loc="lower right")
    figure.suptitle(f"{summaries[0]['env']}: learning within a wall-clock budget")
    figure.tight_layout()
    save_figure(figure, path)


def main(args: argparse.Namespace) -> int:
    summary = run(args)
    last = summary["points"][-1] if summary["points"] else None
    if last:
        print(f"final: {last['train_minutes']:.1f} min, {last['env_steps']} env steps, "
              f"eval return {last['eval_return']:.1f}")
    return 0


if __name__ == "__main__":
    import sys

    parser = argparse.ArgumentParser(prog="python -m planet.learning_bench",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
