"""Shared helpers of `evaluate`, `predict` and `watch`: load a trained run, draw and save frames.

    run = load_run("runs/cartpole-swingup/paper-s0")     # config.json + newest checkpoint
    run.agent.act(obs, explore=False)                   # a ready agent (model in eval mode)
    write_video("agent.mp4", upscale(hwc(frames), 4))   # mp4/webm via ffmpeg, gif via Pillow

Frames: `obs` from the envs are uint8 (N, 3, 64, 64) (channels first); every drawing helper here
works on uint8 (..., H, W, 3) (channels last), the layout videos and images use.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planet.checkpoint import (
    CheckpointError,
    check_fits_config,
    load_checkpoint,
    load_latest,
    load_model_weights,
)
from planet.cli import UsageError
from planet.config import Config, apply_overrides
from planet.train import Components, TrainError, build, load_run_config

GREEN = (40, 200, 60)  # context frames (posterior, the model saw them)
RED = (230, 50, 40)  # open-loop frames (prior, the model did not see them)
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".gif")


class MediaError(UsageError):
    """A video or image we cannot write (unknown extension, non-pixel observations)."""


@dataclass
class LoadedRun:
    """A run folder with its config and a model restored from one of its checkpoints."""

    run_dir: Path
    config: Config
    components: Components
    checkpoint: Path
    episodes: int  # episodes collected when the checkpoint was written
    env_steps: int  # env steps (action repeat included) trained on

    @property
    def model(self):
        return self.components.model

    @property
    def agent(self):
        return self.components.agent

    def summary(self) -> dict[str, Any]:
        """Provenance for the JSON files the commands write."""
        return {
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "episodes_trained": self.episodes,
            "env_steps_trained": self.env_steps,
            "env": self.config.env.name,
            "config_hash": self.config.hash(),
        }


def load_run(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    overrides: dict[str, Any] | None = None,
    env=None,
    warn=print,
) -> LoadedRun:
    """Read RUN_DIR/config.json, build the model and load the newest (or the named) checkpoint.

    `overrides` may change fields that leave the model alone (e.g. env.max_episode_steps).
    Raises TrainError for a missing run folder and CheckpointError for a missing, damaged or
    incompatible checkpoint, each with a one-line message.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TrainError(f"run dir {run_dir} does not exist")
    config = load_run_config(run_dir)
    if device is not None:
        overrides = {**(overrides or {}), "device": device}
    if overrides:
        apply_overrides(config, overrides)
    if checkpoint is None:
        loaded = load_latest(run_dir / "checkpoints", warn=warn)
        if loaded is None:
            raise CheckpointError(
                f"no checkpoint in {run_dir / 'checkpoints'}; train first "
                f"(planet train --resume {run_dir})"
            )
        path, payload = loaded
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} not found")
        payload = load_checkpoint(path)
    check_fits_config(config, payload, path, run_dir / "config.json")
    components = build(config, env, log=warn)
    load_model_weights(components.model, payload, path, run_dir / "config.json")
    components.model.eval()
    return LoadedRun(
        run_dir, config, components, path,
        int(payload.get("episode", 0)), int(payload.get("env_steps", 0)),
    )


# --- frames ----------------------------------------------------------------------------------
def hwc(frames_chw: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) -> (..., H, W, 3), uint8 kept."""
    if frames_chw.ndim < 3 or frames_chw.shape[-3] != 3:
        raise MediaError(
            f"expected image observations (..., 3, H, W), got shape {frames_chw.shape}; "
            "videos need a pixel run (not --symbolic)"
        )
    return np.ascontiguousarray(np.moveaxis(frames_chw, -3, -1))


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, C) by an integer factor (keeps pixels sharp)."""
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8."""
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)


def draw_border(frame: np.ndarray, color: tuple[int, int, int], width: int = 4) -> np.ndarray:
    """A copy of an (H, W, 3) frame with a coloured border drawn over its edge pixels."""
    out = frame.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def put_text(
    image: np.ndarray, text: str, origin: tuple[int, int], color=(255, 255, 255),
    scale: float = 0.5, thickness: int = 1,
) -> np.ndarray:
    """Draw `text` with its baseline-left corner at `origin` (x, y), in place; returns image."""
    import cv2

    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness,
                cv2.LINE_AA)
    return image


def text_width(text: str, scale: float = 0.5, thickness: int = 1) -> int:
    import cv2

    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]


def caption_bar(width: int, height: int, lines: list[tuple[str, tuple[int, int, int]]],
                scale: float = 0.5) -> np.ndarray:
    """A dark (height, width, 3) bar with one left-aligned text line per (text, colour)."""
    bar = np.full((height, width, 3), 24, np.uint8)
    step = height // max(len(lines), 1)
    for row, (text, color) in enumerate(lines):
        put_text(bar, text, (6, step * row + int(step * 0.7)), color, scale)
    return bar


def label_frame(frame: np.ndarray, text: str, scale: float = 0.45) -> np.ndarray:
    """A copy of an (H, W, 3) frame with `text` on a dark strip across its top."""
    out = frame.copy()
    height = int(22 * scale / 0.45)
    out[:height] = (out[:height].astype(np.uint16) * 2 // 5).astype(np.uint8)
    return put_text(out, text, (5, int(height * 0.72)), (255, 255, 255), scale)


# --- videos ------------------------------------------------------------------------------------
def check_video_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise MediaError(
            f"cannot write a video to {path}: use one of {', '.join(VIDEO_SUFFIXES)}"
        )
    return path


def write_video(path: str | Path, frames: np.ndarray, fps: float = 20.0) -> Path:
    """Write uint8 frames (N, H, W, 3) as mp4/webm/mkv/avi (ffmpeg) or gif (by extension).

    Keep H and W multiples of 16 for mp4: ffmpeg's encoder otherwise pads or rescales them.
    """
    import imageio.v2 as imageio

    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    if path.suffix.lower() == ".gif":
        path.write_bytes(gif_bytes(frames, fps))
        return path
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1, quality=8)
    return path


def gif_bytes(frames: np.ndarray, fps: float = 20.0) -> bytes:
    """An animated, looping GIF of uint8 frames (N, H, W, 3)."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:],
        duration=max(int(round(1000 / fps)), 20), loop=0, optimize=False,
    )
    return buffer.getvalue()


def log_gif(writer, tag: str, frames: np.ndarray, step: int, fps: float = 20.0) -> None:
    """Log frames (N, H, W, 3) to TensorBoard as an animated GIF in the Images tab.

    `SummaryWriter.add_video` silently writes nothing without moviepy 1.x (shared/TRAPS.md); a
    GIF in an image summary is what add_video produces when it works, and browsers animate it.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3,
                          encoded_image_string=gif_bytes(frames, fps))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]),
                                          step)


def log_eval_media(logger, model, config: Config, episodes: list[dict], replay,
                   step: int) -> None:
    """TensorBoard media at an evaluation: the first eval episode as a GIF (eval/video) and an
    open-loop prediction strip of the newest replay episode (model/open_loop). Pixel runs only."""
    from planet.predict import open_loop, prediction_strip

    writer = getattr(logger, "writer", None)
    if writer is None or not episodes or episodes[0]["obs"].ndim != 4:
        return
    log_gif(writer, "eval/video", upscale(hwc(episodes[0]["obs"]), 2), step)
    if len(replay) == 0:
        return
    episode = replay._episode(len(replay) - 1)
    context = min(5, len(episode["obs"]) - 1)
    horizon = min(50, len(episode["obs"]) - context)
    result = open_loop(model, episode["obs"], episode["action"], context, horizon,
                       config.train.bit_depth)
    writer.add_image("model/open_loop", prediction_strip(result, columns=12), step,
                     dataformats="HWC")
    writer.add_scalar("model/open_loop_mse_end", float(result["mse"][-1]), step)
    writer.flush()


def eval_media_due(config: Config, episode: int) -> bool:
    """Whether the evaluation after `episode` logs media: the first evaluation at or after each
    multiple of train.image_log_interval episodes (so at most one per that many episodes, and
    every evaluation when test_interval >= image_log_interval, as in the paper config)."""
    every, interval = config.train.image_log_interval, config.train.test_interval
    if not every or not interval:
        return False
    return (episode + 1) // every != (episode + 1 - interval) // every
