"""Open-loop video prediction of a trained world model (the paper's Fig. 5 / Sec. 6).

    planet predict RUN_DIR [--context 5] [--horizon 50] [--episode INDEX] [--out PATH]

Data: a stored replay episode of the run, RUN_DIR/episodes/<index>_<length>.npz (default: the
newest one). That is real data the agent collected, and the newest episode was collected after
the last model update, so the model has not been trained on it. No env or planner is needed,
which keeps the command fast and its output reproducible (`--seed` fixes the prior samples).

What is computed, for rows t = start .. start + context + horizon - 1 of that episode:

    context   (t <  start + C): filter the posterior q(s_t | h_t, o_t) on the real frames and
                                decode it (a reconstruction; green border)
    open loop (t >= start + C): roll the prior p(s_t | h_t) forward from the last posterior with
                                the episode's real actions, never seeing o_t (red border)

Outputs (PATH defaults to RUN_DIR/videos/predict.mp4; the rest sit next to it, same stem):
    predict.mp4          per step: ground truth | reconstruction or prediction | |error|
    predict_sheet.png    contact sheet with the same three rows
    predict.json         per-step MSE: `context_mse` (C values) and `mse` (H values, open loop)
    predict_error.png    the MSE curve along context and horizon

MSE is the mean squared error per pixel and channel, with pixels in [0, 1]; the ground truth is
the 5-bit frame at its bin centres, the value the model is trained to predict.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from planet.components import spaces_of_episode
from planet.data.replay import ReplayError, list_episode_files, load_episode
from planet.errors import UsageError
from planet.figures import save_figure
from planet.media import (
    GREEN,
    RED,
    MediaError,
    caption_bar,
    check_video_path,
    put_text,
    text_width,
    write_video,
)
from planet.predictions import open_loop_prediction, prediction_cell, sheet_columns, step_label
from planet.run_files import guard_outputs
from planet.runs import load_run
from planet.seeds import check_seed_option

ROW_NAMES = ("ground truth", "model", "|error|")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by planet train")
    parser.add_argument("--context", type=int, default=5, metavar="C",
                        help="real frames the posterior is filtered on (default 5)")
    parser.add_argument("--horizon", type=int, default=50, metavar="H",
                        help="open-loop steps predicted with the prior (default 50)")
    parser.add_argument("--episode", type=int, default=-1, metavar="INDEX",
                        help="replay episode index in RUN_DIR/episodes (default -1: the newest)")
    parser.add_argument("--start", type=int, default=0,
                        help="first row of the episode to use (default 0, the reset frame)")
    parser.add_argument("--out", metavar="PATH",
                        help="video path, .mp4 or .gif (default RUN_DIR/videos/predict.mp4); "
                        "the sheet, JSON and curve are written next to it")
    parser.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (default: newest)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior samples")
    parser.add_argument("--fps", type=float, default=8.0, help="video frame rate (default 8)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the run's")


def video_frames(result: dict, scale: int = 3, border: int = 4) -> np.ndarray:
    """One frame per step: a two-line caption, then truth | model | |error| side by side."""
    context = result["context"]
    panel = 64 * scale
    frames = []
    for index in range(len(result["truth"])):
        in_context = index < context
        if in_context:
            title = f"context {index + 1}/{context}: posterior reconstruction"
        else:
            title = f"open loop +{index - context + 1}/{result['horizon']}: prior prediction"
        mse = (result["context_mse"] if in_context else result["mse"])[
            index if in_context else index - context]
        bar = caption_bar(3 * panel, 48, [(f"{title}  (mse {mse:.4f})",
                                           GREEN if in_context else RED), ("", RED)])
        for column, name in enumerate(ROW_NAMES):  # each panel's name centred over it
            x = column * panel + (panel - text_width(name)) // 2
            put_text(bar, name, (x, 41), (220, 220, 220))
        panels = [prediction_cell(result[key][index], index, context, scale, border)
                  for key in ("truth", "model", "error")]
        frames.append(np.concatenate([bar, np.concatenate(panels, axis=1)], axis=0))
    return np.stack(frames)  # (C + H, 48 + 64 * scale, 3 * 64 * scale, 3)


def contact_sheet(result: dict, path: Path, title: str, scale: int = 2) -> None:
    """PNG: rows truth / model / |error|, columns = chosen steps, labelled axes and legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    context = result["context"]
    shown = sheet_columns(context, result["horizon"])
    cell, gap = 64 * scale, 6
    width = len(shown) * cell + (len(shown) - 1) * gap
    height = 3 * cell + 2 * gap
    grid = np.full((height, width, 3), 255, np.uint8)
    for row, key in enumerate(("truth", "model", "error")):
        for column, index in enumerate(shown):
            y, x = row * (cell + gap), column * (cell + gap)
            grid[y : y + cell, x : x + cell] = prediction_cell(
                result[key][index], index, context, scale, 4)
    dpi = 100
    margin_left, margin_top, margin_bottom = 130, 80, 50
    fig = plt.figure(figsize=((width + margin_left + 20) / dpi,
                              (height + margin_top + margin_bottom) / dpi), dpi=dpi)
    fig_w, fig_h = fig.get_size_inches() * dpi
    ax = fig.add_axes((margin_left / fig_w, margin_bottom / fig_h, width / fig_w, height / fig_h))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([c * (cell + gap) + cell / 2 for c in range(len(shown))])
    ax.set_xticklabels([step_label(i, context) for i in shown], fontsize=10)
    for tick, index in zip(ax.get_xticklabels(), shown, strict=True):
        tick.set_color("green" if index < context else "firebrick")
    ax.set_yticks([r * (cell + gap) + cell / 2 for r in range(3)])
    ax.set_yticklabels(ROW_NAMES, fontsize=11)
    ax.set_xlabel("step (cN: context frame N, +k: k steps open loop)", fontsize=10)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.tick_params(length=0)
    fig.suptitle(title, fontsize=11, y=1 - 12 / fig_h, va="top")
    fig.legend(
        handles=[Patch(color=np.array(GREEN) / 255, label="context: posterior reconstruction"),
                 Patch(color=np.array(RED) / 255, label="open loop: prior prediction")],
        loc="upper center", ncol=2, fontsize=9, frameon=False,
        bbox_to_anchor=(0.5, 1 - 34 / fig_h),
    )
    save_figure(fig, path, dpi=dpi)


def error_plot(result: dict, path: Path, title: str) -> None:
    """PNG: per-step MSE, context steps (green, at -C+1 .. 0) then open loop (red, 1 .. H)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    context, horizon = result["context"], result["horizon"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(np.arange(1 - context, 1), result["context_mse"], "o-", color="green",
            label="context (posterior reconstruction)")
    if horizon:
        ax.plot(np.arange(1, horizon + 1), result["mse"], "o-", color="firebrick", markersize=3,
                label="open loop (prior prediction)")
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("step (≤ 0: context frames, > 0: steps predicted open loop)")
    ax.set_ylabel("MSE per pixel (pixels in [0, 1])")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


# --- the command ---------------------------------------------------------------------------------
def _episode_file(run_dir: Path, index: int) -> Path:
    files = list_episode_files(run_dir / "episodes")
    if not files:
        raise ReplayError(f"no replay episodes in {run_dir / 'episodes'}; train the run first")
    if not -len(files) <= index < len(files):
        raise ReplayError(f"--episode {index} is out of range: {run_dir / 'episodes'} holds "
                          f"{len(files)} episodes (0 .. {len(files) - 1}, or -1 for the newest)")
    return files[index]


def main(args: argparse.Namespace) -> int:
    if args.context < 1 or args.horizon < 1 or args.start < 0:
        raise UsageError("--context and --horizon must be at least 1 and --start at least 0")
    check_seed_option(args.seed)
    if args.fps <= 0:
        raise MediaError(f"--fps must be positive, got {args.fps}")
    run_dir = Path(args.run_dir)
    out = check_video_path(args.out or run_dir / "videos" / "predict.mp4")
    outputs = [("--out", path) for path in output_paths(out).values()]
    with guard_outputs(run_dir, outputs, "planet predict"):
        return predict_run(args, run_dir, out)


def output_paths(out: Path) -> dict[str, Path]:
    """The video and, next to it with the same stem, the sheet, error curve and JSON summary."""
    stem = out.with_suffix("")
    return {"video": out, "sheet": stem.with_name(stem.name + "_sheet.png"),
            "curve": stem.with_name(stem.name + "_error.png"),
            "summary": stem.with_name(stem.name + ".json")}


def predict_run(args: argparse.Namespace, run_dir: Path, out: Path) -> int:
    path = _episode_file(run_dir, args.episode)
    episode = load_episode(path)
    # The model's input and action sizes come from the episode's rows: no env is built.
    run = load_run(run_dir, args.checkpoint, args.device, env=spaces_of_episode(episode))
    if run.model.symbolic:
        raise MediaError("predict draws images; this run uses --symbolic state observations")
    rows = len(episode["obs"])
    if args.start + args.context + args.horizon > rows:
        room = rows - args.start - args.context
        advice = f"--horizon {room} at most" if room >= 1 else "lower --start or --context"
        raise ReplayError(
            f"{path.name} has {rows} rows; --start {args.start} + --context {args.context} + "
            f"--horizon {args.horizon} does not fit ({advice})"
        )
    result = open_loop_prediction(run.model, episode["obs"], episode["action"], args.context,
                                  args.horizon, run.config.train.bit_depth, args.start, args.seed)
    if not (np.isfinite(result["mse"]).all() and np.isfinite(result["context_mse"]).all()):
        print("warning: the prediction error is not finite; the checkpoint may have diverged")
    title = (f"{run.config.env.name}: open-loop prediction, {run_dir.name} after "
             f"{run.env_steps} env steps, replay episode {path.stem}")
    paths = output_paths(out)
    sheet, curve, summary_path = paths["sheet"], paths["curve"], paths["summary"]
    write_video(out, video_frames(result), args.fps)
    contact_sheet(result, sheet, title)
    error_plot(result, curve, title)
    summary = {
        **run.summary(),
        "episode_file": str(path),
        "start": args.start,
        "context": args.context,
        "horizon": args.horizon,
        "seed": args.seed,
        "context_mse": [float(x) for x in result["context_mse"]],
        "mse": [float(x) for x in result["mse"]],
        "mean_context_mse": float(result["context_mse"].mean()),
        "mean_open_loop_mse": float(result["mse"].mean()),
        "files": {"video": str(out), "sheet": str(sheet), "curve": str(curve)},
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"context MSE {summary['mean_context_mse']:.5f}, open-loop MSE "
          f"{summary['mean_open_loop_mse']:.5f} (step 1 {result['mse'][0]:.5f}, "
          f"step {args.horizon} {result['mse'][-1]:.5f})")
    print(f"wrote {out}, {sheet}, {curve}, {summary_path}")
    return 0

