"""What the world model sees and predicts, as pictures: the open-loop prediction (posterior on
real context frames, then the prior with the real actions) that `planet predict`, TensorBoard
and the tests share; the reconstruction strip of a training batch; and the TensorBoard media
logged at evaluations. Frames are drawn with planet.media.
"""

from __future__ import annotations

import numpy as np
import torch

from planet.config import Config
from planet.data.preprocess import preprocess_obs, to_display
from planet.media import GREEN, RED, draw_border, gif_bytes, hwc, to_uint8, upscale


# --- open-loop prediction -----------------------------------------------------------------------
@torch.no_grad()
def open_loop_prediction(model, obs_uint8: np.ndarray, action: np.ndarray, context: int,
                         horizon: int, bit_depth: int = 5, start: int = 0,
                         seed: int | None = None) -> dict:
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



# --- training and evaluation pictures for TensorBoard ----------------------------------
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
    result = open_loop_prediction(model, episode["obs"], episode["action"], context, horizon,
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
