"""Evaluate a trained agent: noise-free episodes, a returns table, eval.json and a video.

    planet evaluate RUN_DIR [--episodes 10] [--seed S] [--video agent.mp4] [--sheet agent.png]
                            [--checkpoint PATH]

All episodes run at once as a batch of envs (the planner plans for all of them in one call), each
env seeded differently: env seed = episode_seed(S, i, Stream.EVALUATE), a stream apart from the
training (0) and in-training evaluation (1) seeds. Exploration noise is off. The planner's random
numbers are seeded from S too, so the same command gives the same returns.

eval.json (RUN_DIR/eval.json unless --json) holds the per-episode returns and seeds, their mean,
std, min and max, and where they come from: the checkpoint file, the episodes and env steps it was
trained for, the hash of config.json as the run wrote it, the overrides this command applied,
and the device it ran on.
The video (mp4/webm by ffmpeg, gif by Pillow, chosen by the extension) shows the agent's own 64x64
camera view, upscaled with nearest-neighbour (--size, default 256) and labelled, episode after
episode. The sheet (PNG) is the same frames as one still picture: a row per episode, --sheet-columns
frames evenly spaced from reset to the last step, for a page or an issue where a video cannot play.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from planet.components import env_from_config
from planet.episodes import run_episodes
from planet.errors import UsageError
from planet.media import check_video_path, hwc, label_frame, upscale, write_image, write_video
from planet.run_files import guard_outputs
from planet.runs import load_run
from planet.seeds import Stream, check_seed_option, episode_seed
from planet.utils import seed_everything


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by planet train")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    parser.add_argument("--seed", type=int, help="evaluation seed (default: the run's seed)")
    parser.add_argument("--video", metavar="PATH",
                        help="write the agent's camera view, .mp4 or .gif by extension")
    parser.add_argument("--sheet", metavar="PATH",
                        help="write a still .png: a row of frames per episode, from reset to "
                        "the last step")
    parser.add_argument("--sheet-columns", type=int, default=11, metavar="N",
                        help="frames per row of the sheet (default 11)")
    parser.add_argument("--size", type=int, default=256,
                        help="video and sheet frame size in pixels, a multiple of 64 "
                        "(default 256)")
    parser.add_argument("--fps", type=float, default=0,
                        help="video frame rate (default 50 / action repeat: real time for "
                        "dm_control tasks)")
    parser.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (default: newest)")
    parser.add_argument("--json", metavar="PATH", help="where to write eval.json "
                        "(default RUN_DIR/eval.json)")
    parser.add_argument("--max-episode-steps", type=int, metavar="N",
                        help="cut episodes at N env steps (default: the run's, 1000); for a "
                        "quick look, the returns are then not comparable to the paper's")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the run's")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {args.episodes}")
    check_seed_option(args.seed)
    if args.size < 64 or args.size % 64:
        raise UsageError(f"--size must be a positive multiple of 64, got {args.size}")
    if args.sheet_columns < 2:
        raise UsageError(f"--sheet-columns must be at least 2, got {args.sheet_columns}")
    if args.fps < 0:
        raise UsageError(f"--fps must be positive (0: 50 / action repeat), got {args.fps}")
    video = check_video_path(args.video) if args.video else None
    sheet = Path(args.sheet) if args.sheet else None
    if sheet is not None and sheet.suffix.lower() != ".png":
        raise UsageError(f"--sheet writes a PNG: give a path ending in .png, got {sheet}")
    overrides = {}
    if args.max_episode_steps is not None:
        overrides["env.max_episode_steps"] = args.max_episode_steps
    run_dir = Path(args.run_dir)
    json_path = Path(args.json) if args.json else run_dir / "eval.json"
    outputs = [("--json", json_path)] + ([("--video", video)] if video else [])
    outputs += [("--sheet", sheet)] if sheet else []
    with guard_outputs(run_dir, outputs, "planet evaluate"):
        return evaluate_run(args, run_dir, video, sheet, json_path, overrides)


def evaluate_run(args: argparse.Namespace, run_dir: Path, video: Path | None,
                 sheet: Path | None, json_path: Path, overrides: dict) -> int:
    run = load_run(run_dir, args.checkpoint, args.device, overrides)
    seed_base = run.config.seed if args.seed is None else args.seed
    if (video or sheet) and run.model.symbolic:  # before building the envs
        option = "--video" if video else "--sheet"
        raise UsageError(f"{option} needs a pixel run; this run uses --symbolic observations")
    seeds = [episode_seed(seed_base, index, Stream.EVALUATE) for index in range(args.episodes)]
    print(f"evaluating {run.checkpoint} ({run.env_steps} env steps trained) on "
          f"{run.config.env.name}: {args.episodes} episodes")
    episodes, action_repeat = play_episodes(run, seeds, seed_base, args.no_progress)
    returns = [float(episode["reward"].sum()) for episode in episodes]
    lengths = [len(episode["obs"]) - 1 for episode in episodes]
    stats = return_stats(returns)
    for index, (value, length) in enumerate(zip(returns, lengths, strict=True)):
        print(f"  episode {index}: return {value:8.2f}  ({length} agent steps)")
    print(f"return: mean {stats['mean']:.2f}, std {stats['std']:.2f}, "
          f"min {stats['min']:.2f}, max {stats['max']:.2f}")
    summary = {
        **run.summary(),
        "episodes": args.episodes,
        "seed": seed_base,
        "env_seeds": seeds,
        "returns": returns,
        "agent_steps": lengths,
        "action_repeat": action_repeat,
        "max_episode_steps": run.config.env.max_episode_steps,
        **{f"return_{key}": value for key, value in stats.items()},
        "video": str(video) if video else None,
        "sheet": str(sheet) if sheet else None,
    }
    write_pictures(args, episodes, action_repeat, video, sheet)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {json_path}")
    return 0


def play_episodes(run, seeds: list[int], seed_base: int,
                  no_progress: bool) -> tuple[list[dict], int]:
    """One noise-free episode per env seed, all envs stepped as one batch; (episodes, the
    envs' action repeat). The envs are closed afterwards, and so is the run's own."""
    envs = [env_from_config(run.config, seed) for seed in seeds]
    # The planner's candidates come from torch's RNG: seeded from --seed, the same command gives
    # the same returns (same machine, precision and thread count).
    seed_everything(episode_seed(seed_base, 0, Stream.EVALUATE_RNG))
    steps = envs[0].agent_steps_per_episode  # the time limit: no episode runs longer
    bar = tqdm(total=steps, desc=f"{len(envs)} episodes at once", unit="step",
               dynamic_ncols=True, disable=no_progress)

    def on_step(step: int) -> None:
        bar.update(min(step, steps) - bar.n)

    try:
        episodes = run_episodes(envs, run.agent, seeds, explore=False, on_step=on_step)
    finally:
        bar.close()
        for env in envs:
            env.close()
        run.components.env.close()
    return episodes, envs[0].action_repeat


def return_stats(returns: list[float]) -> dict[str, float]:
    """Mean, std (ddof 0), min and max of the episodes' returns."""
    values = np.array(returns, float)
    return {"mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def write_pictures(args: argparse.Namespace, episodes: list[dict], action_repeat: int,
                   video: Path | None, sheet: Path | None) -> None:
    """The --video (every episode, one after another) and the --sheet (a row per episode)."""
    if video is not None:
        # Real time for dm_control (0.02 s per env step); other envs get the same rate.
        fps = args.fps or 50.0 / action_repeat
        write_video(video, agent_video_frames(episodes, args.size // 64), fps)
        frames = sum(len(episode["obs"]) for episode in episodes)
        print(f"wrote {video} ({frames} frames, {args.size}x{args.size})")
    if sheet is not None:
        image = agent_sheet(episodes, args.size // 64, args.sheet_columns)
        write_image(sheet, image)
        print(f"wrote {sheet} ({len(episodes)} rows of {args.sheet_columns} frames, "
              f"{image.shape[1]}x{image.shape[0]})")


def agent_video_frames(episodes: list[dict], scale: int) -> Iterator[np.ndarray]:
    """The episodes' frames one after another (sum of N_i + 1 of them), each (64 * scale,
    64 * scale, 3) uint8 and labelled with the episode number, the step and the return so far;
    made one episode at a time, so that a long video never sits in memory whole."""
    for index in range(len(episodes)):
        yield from labelled_frames(episodes, index, scale)


def agent_sheet(episodes: list[dict], scale: int, columns: int, gap: int = 2) -> np.ndarray:
    """One row per episode of `columns` labelled frames at evenly spaced steps, first (the reset)
    and last included, `gap` dark pixels between frames: (E * (S + gap) - gap, C * (S + gap) -
    gap, 3) uint8 for S = 64 * scale."""
    size = 64 * scale
    sheet = np.full((len(episodes) * (size + gap) - gap, columns * (size + gap) - gap, 3), 16,
                    np.uint8)
    for row, episode in enumerate(episodes):
        steps = np.linspace(0, len(episode["obs"]) - 1, columns).round().astype(int)
        for column, frame in enumerate(labelled_frames(episodes, row, scale, steps)):
            top, left = row * (size + gap), column * (size + gap)
            sheet[top:top + size, left:left + size] = frame
    return sheet


def labelled_frames(episodes: list[dict], index: int, scale: int,
                    steps: np.ndarray | None = None) -> np.ndarray:
    """Episode `index`'s frames at `steps` (default: all), (len(steps), 64 * scale, 64 * scale,
    3) uint8, labelled with the episode number, the step and the return so far."""
    episode = episodes[index]
    steps = np.arange(len(episode["obs"])) if steps is None else steps
    images = upscale(hwc(episode["obs"][steps]), scale)
    running = np.cumsum(episode["reward"])
    return np.stack([
        label_frame(image, f"ep {index + 1}/{len(episodes)} | t={step} | R={running[step]:.1f}",
                    scale=0.45 if scale >= 4 else 0.35)
        for step, image in zip(steps, images, strict=True)
    ])
