"""Watch a trained agent live: a window with the real frame beside the model's reconstruction.

    planet watch RUN_DIR [--episodes N] [--scale 4] [--fps 25] [--checkpoint PATH] [--follow]

Each step the agent filters o_t into its posterior q(s_t | h_t, o_t) and plans with CEM, without
exploration noise; the right panel decodes that posterior state (h_t, s_t), so it shows what the
agent believes it sees. With --follow, each episode starts from the run's newest checkpoint,
so a window beside a run that is still training shows it learn. The window (pygame, which
Gymnasium's classic-control extra installs; opencv-python-headless has no GUI) closes on Esc, q
or the close button, or after --episodes.

It needs a display (X11 DISPLAY or Wayland). Without one it stops with a one-line message; use
`planet evaluate RUN_DIR --video agent.mp4` to get a video instead.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from planet.data.preprocess import to_display
from planet.errors import UsageError
from planet.media import caption_bar, hwc, upscale
from planet.models.rssm import features
from planet.runs import load_run
from planet.seeds import Stream, check_seed_option, episode_seed


class DisplayError(UsageError):
    """No display to open a window on."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by planet train")
    parser.add_argument("--episodes", type=int, default=0,
                        help="episodes to show, then exit (default 0: until the window closes)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop after this many agent steps in all (default 0: no limit)")
    parser.add_argument("--scale", type=int, default=4, help="pixel upscaling (default 4)")
    parser.add_argument("--fps", type=float, default=25.0,
                        help="at most this many frames per second (default 25; planning on a "
                        "CPU is usually slower)")
    parser.add_argument("--seed", type=int, help="env seed base (default: the run's seed)")
    parser.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (default: newest)")
    parser.add_argument("--follow", action="store_true",
                        help="before each episode, load the run's newest checkpoint if it is "
                        "newer (watch a run that is still training)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the run's")


def require_display() -> str:
    """The SDL video driver to use; raises DisplayError when there is no display."""
    if os.environ.get("DISPLAY"):
        return "x11"
    if os.environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    raise DisplayError(
        "no display (neither DISPLAY nor WAYLAND_DISPLAY is set), so no window can open; "
        "write a video instead: planet evaluate RUN_DIR --video agent.mp4"
    )


def open_window(width: int, height: int, title: str):
    driver = require_display()
    # planet.envs sets SDL_VIDEODRIVER=dummy (for Gymnasium's renderers); a window needs a real
    # driver. A driver the user chose (anything but our dummy) is kept.
    if os.environ.get("SDL_VIDEODRIVER", "dummy") == "dummy":
        os.environ["SDL_VIDEODRIVER"] = driver
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    # A software window surface: SDL's default (a GLX renderer) fails with BadAccess on
    # X_GLXMakeCurrent once MuJoCo holds an EGL context in the same process (seen under Xvfb).
    os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", "0")
    import pygame

    try:
        pygame.display.init()
        screen = pygame.display.set_mode((width, height))
    except pygame.error as error:
        raise DisplayError(
            f"cannot open a window on display {os.environ.get('DISPLAY') or 'wayland'}: {error}; "
            "write a video instead: planet evaluate RUN_DIR --video agent.mp4"
        ) from None
    pygame.display.set_caption(title)
    return pygame, screen


@torch.no_grad()
def reconstruction(run) -> np.ndarray:
    """Decode the agent's current posterior state (h_t, s_t): (B, 64, 64, 3) uint8."""
    agent = run.agent
    with agent.autocast():
        image = run.model.decoder(features(agent.belief, agent.state)).float()  # (B, 3, 64, 64)
    return to_display(image).permute(0, 2, 3, 1).cpu().numpy()


CAPTION_HEIGHT = 36  # px, the two caption lines above the frames
GAP = 8  # px between the real frame and the reconstruction


def window_size(scale: int) -> tuple[int, int]:
    """(width, height) of what `compose` draws at `scale`."""
    return 2 * 64 * scale + GAP, CAPTION_HEIGHT + 64 * scale


def compose(real: np.ndarray, recon: np.ndarray, scale: int, lines: list[str]) -> np.ndarray:
    """Caption bar over [real | gap | reconstruction], (height, width, 3) of window_size."""
    real, recon = upscale(real, scale), upscale(recon, scale)
    gap = np.full((real.shape[0], GAP, 3), 24, np.uint8)
    body = np.concatenate([real, gap, recon], axis=1)
    colors = [(255, 255, 255), (180, 180, 180)]
    bar = caption_bar(body.shape[1], CAPTION_HEIGHT, list(zip(lines, colors, strict=False)),
                      scale=0.42)
    return np.concatenate([bar, body], axis=0)


def main(args: argparse.Namespace) -> int:
    if args.scale < 1 or args.episodes < 0 or args.max_steps < 0:
        raise UsageError("--scale must be at least 1, --episodes and --max-steps at least 0")
    check_seed_option(args.seed)
    if args.follow and args.checkpoint:
        raise UsageError("--follow loads the run's newest checkpoint before each episode; "
                         "give --checkpoint PATH or --follow, not both")
    require_display()  # before the (slow) model load
    run = load_run(args.run_dir, args.checkpoint, args.device)
    if run.model.symbolic:
        raise UsageError("watch shows images; this run uses --symbolic state observations")
    seed_base = run.config.seed if args.seed is None else args.seed
    width, height = window_size(args.scale)
    pygame, screen = open_window(width, height, f"planet watch: {run.run_dir}")
    print(f"watching {run.checkpoint} on {run.config.env.name} in a {width}x{height} window "
          "(Esc or q closes it)", flush=True)
    env = run.components.env
    frames, episode, closed = 0, 0, False
    try:
        while not closed and (args.episodes == 0 or episode < args.episodes):
            if args.follow and run.load_newer_checkpoint():
                print(f"loaded {run.checkpoint} ({run.env_steps} env steps trained)", flush=True)
            obs, _ = env.reset(seed=episode_seed(seed_base, episode, Stream.WATCH))
            run.agent.reset(1)
            total, step, done = 0.0, 0, False
            while not (done or closed):
                started = time.perf_counter()
                action = run.agent.act(obs[None], explore=False)[0]
                lines = [f"episode {episode + 1}  step {step}  return {total:.1f}  "
                         f"(trained {run.episodes} ep.)",
                         "real frame (left)  |  model: decoded posterior (right)"]
                image = compose(hwc(obs), reconstruction(run)[0], args.scale, lines)
                # pygame surfaces are indexed (x, y): transpose the (H, W, 3) image.
                pygame.surfarray.blit_array(screen, image.transpose(1, 0, 2))
                pygame.display.flip()
                frames += 1
                for event in pygame.event.get():
                    if event.type == pygame.QUIT or (
                        event.type == pygame.KEYDOWN and event.key in (pygame.K_ESCAPE,
                                                                       pygame.K_q)):
                        closed = True
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                step += 1
                done = terminated or truncated
                if args.max_steps and frames >= args.max_steps:
                    closed = True
                if args.fps > 0:
                    time.sleep(max(0.0, 1.0 / args.fps - (time.perf_counter() - started)))
            print(f"episode {episode + 1}: return {total:.2f} over {step} steps"
                  + ("" if done else " (stopped early)"), flush=True)
            episode += 1
    finally:
        pygame.display.quit()
        env.close()
    print(f"drew {frames} frames", flush=True)
    return 0
