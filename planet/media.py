"""Frames, captions and image, video and GIF files: the drawing that evaluate, predict, watch
and TensorBoard share. What the model predicts, drawn with these, is in planet.predictions.

Frames: `obs` from the envs are uint8 (N, 3, 64, 64) (channels first); every drawing helper here
works on uint8 (..., H, W, 3) (channels last), the layout videos and images use.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

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
