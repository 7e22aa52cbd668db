"""Pictures and videos of a run: frames, captions, video and GIF files, TensorBoard media, and
the open-loop prediction that predict, the trainer's TensorBoard images and tests share.

Frames: `obs` from the envs are uint8 (N, 3, 64, 64) (channels first); every drawing helper here
works on uint8 (..., H, W, 3) (channels last), the layout videos and images use.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from planet.config import Config
from planet.data.preprocess import preprocess_obs, to_display
from planet.errors import UsageError

GREEN = (40, 200, 60)  # context frames (posterior, the model saw them)
RED = (230, 50, 40)  # open-loop frames (prior, the model did not see them)
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".gif")


class MediaError(UsageError):
    """A video or image we cannot write (unknown extension, non-pixel observations)."""


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


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 20.0) -> Path:
    """Write uint8 frames, (N, H, W, 3) or any iterable of (H, W, 3), as mp4/webm/mkv/avi
    (ffmpeg) or gif (by extension). ffmpeg formats take the frames one at a time, so a long
    video never sits in memory whole; a gif is built in memory.

    Keep H and W multiples of 16 for mp4: ffmpeg's encoder otherwise pads or rescales them.
    """
    import imageio.v2 as imageio

    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        path.write_bytes(gif_bytes(np.asarray(list(frames), dtype=np.uint8), fps))
        return path
    with imageio.get_writer(path, fps=fps, macro_block_size=1, quality=8) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))
    return path


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write one uint8 (H, W, 3) image as a PNG, pixel for pixel."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path, format="PNG")
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

    `SummaryWriter.add_video` silently writes nothing without moviepy 1.x (PyTorch issue 147317); a
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
    writer = getattr(logger, "writer", None)
    if writer is None or not episodes or episodes[0]["obs"].ndim != 4:
        return
    log_gif(writer, "eval/video", upscale(hwc(episodes[0]["obs"]), 2), step)
    if len(replay) == 0:
        return
    episode = replay.episode(len(replay) - 1)
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


# --- open-loop prediction -----------------------------------------------------------------------
@torch.no_grad()
def open_loop(model, obs_uint8: np.ndarray, action: np.ndarray, context: int, horizon: int,
              bit_depth: int = 5, start: int = 0, seed: int | None = None) -> dict:
    """Filter `context` frames, then predict `horizon` frames open loop with the real actions.

    Args:
        obs_uint8: an episode's frames, (N + 1, 3, 64, 64) uint8 (replay layout).
        action: its actions, (N + 1, A); row t holds a_{t-1}, the action that led to o_t.
        seed: when given, reseeds torch's global generator, which fixes the prior's samples.
    Returns:
        truth, model, error: float images in [0, 1], (C + H, 64, 64, 3) each;
        context_mse (C,), mse (H,): per-step mean squared error per pixel.
    """
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    rows = slice(start, start + context + horizon)
    obs = preprocess_obs(torch.as_tensor(obs_uint8[rows], device=device), bit_depth, noise=False)
    act = torch.as_tensor(action[rows], device=device, dtype=torch.float32)[:, None]  # (T, 1, A)
    # Posterior on the C real frames, then the prior open loop with the real actions a_{t-1}.
    frames = model.open_loop(obs[:context, None], act)[:, 0].float()  # (C + H, 3, 64, 64)
    predicted = (frames + 0.5).clamp(0, 1)
    truth = obs + 0.5
    squared = ((predicted - truth) ** 2).mean(dim=(1, 2, 3))  # (C + H,)
    to_hwc = lambda x: x.permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
    return {
        "truth": to_hwc(truth),
        "model": to_hwc(predicted),
        "error": to_hwc((predicted - truth).abs()),
        "context_mse": squared[:context].cpu().numpy(),
        "mse": squared[context:].cpu().numpy(),
        "context": context,
        "horizon": horizon,
    }


def sheet_columns(context: int, horizon: int, open_columns: int = 10) -> list[int]:
    """Row indices shown on the contact sheet: the last (up to 5) context frames, then up to
    `open_columns` open-loop steps spread evenly, the last one included."""
    shown = list(range(max(0, context - 5), context))
    if horizon > 0:
        steps = np.unique(np.linspace(1, horizon, min(horizon, open_columns)).round().astype(int))
        shown += [context + int(k) - 1 for k in steps]
    return shown


def step_label(index: int, context: int) -> str:
    """'c3' for the 3rd context frame, '+12' for the 12th open-loop step."""
    return f"c{index + 1}" if index < context else f"+{index - context + 1}"


def prediction_cell(image: np.ndarray, index: int, context: int, scale: int,
                    border: int) -> np.ndarray:
    """One frame of a prediction, upscaled, with a green (context) or red (open loop) border."""
    color = GREEN if index < context else RED
    return draw_border(upscale(to_uint8(image), scale), color, border)


def prediction_strip(result: dict, columns: int = 12, border: int = 2) -> np.ndarray:
    """Three rows (truth, model, |error|) x chosen steps, uint8 (3 * 64, n * 64, 3); no text
    (for TensorBoard, whose image tab shows the tag and step)."""
    context, horizon = result["context"], result["horizon"]
    shown = sheet_columns(context, horizon, max(columns - min(context, 5), 1))
    rows = [
        np.concatenate([prediction_cell(result[key][i], i, context, 1, border) for i in shown],
                       axis=1)
        for key in ("truth", "model", "error")
    ]
    return np.concatenate(rows, axis=0)


# --- pictures --------------------------------------------------------------------------------


def reconstruction_strip(learner, chunks, frames: int = 8) -> np.ndarray | None:
    """Truth (top) and reconstruction (bottom) of the first chunk, (2 * 64, frames * 64, 3)."""
    if chunks.obs.dtype != np.uint8:
        return None
    with torch.no_grad():
        obs, action, _ = learner.to_device(chunks)
        with learner.autocast():
            rollout = learner.model.observe(obs[:, :1], action[:, :1])  # the first chunk only
            recon = learner.model.decoder(rollout.features[:, 0]).float()  # (T, 3, 64, 64)
    count = min(frames, action.shape[0])
    truth = to_display(obs[:count, 0]).permute(2, 0, 3, 1).flatten(1, 2)  # (64, count*64, 3)
    pred = to_display(recon[:count]).permute(2, 0, 3, 1).flatten(1, 2)
    return torch.cat([truth, pred], dim=0).cpu().numpy()
