"""How a trained cheetah-run agent carries its torso: noise-free episodes with the torso's pitch
and forward speed at every agent step, as JSON and as a figure.

    .venv/bin/python results/six-tasks-100k/diagnostics/cheetah_posture.py \
        sweeps/six-tasks-100k/cheetah-run/s0 --episodes 10 \
        --out results/six-tasks-100k/diagnostics/cheetah-run-s0-posture

The reward per env step is min(speed / 10, 1) for the torso's forward speed (dm_control's
cheetah `run`), whatever the posture. The pitch is the torso's hinge angle `rooty` (0: level,
+-90 degrees: standing on one end, +-180: on its back); the figure draws its size, the tilt.
Episode i uses env seed SEED_BASE + i and torch seed i for the planner's CEM noise, so the file
is reproducible.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import probe
import torch
from matplotlib.figure import Figure

ON_END = 60.0  # degrees of tilt beyond which the cheetah counts as tipped up onto one end
ON_BACK = 120.0  # degrees of tilt beyond which it lies on its back


def pitch_degrees(physics) -> float:
    """The torso's pitch in (-180, 180] degrees."""
    angle = math.degrees(float(physics.named.data.qpos["rooty"][0]))
    return (angle + 180.0) % 360.0 - 180.0


def play(run, env, env_seed: int, torch_seed: int) -> dict:
    torch.manual_seed(torch_seed)
    obs, _ = env.reset(seed=env_seed)
    physics = probe.physics_of(env)
    run.agent.reset(1)
    pitches, speeds, episode_return, done = [], [], 0.0, False
    while not done:
        action = run.agent.act(obs[None], explore=False)[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += reward
        pitches.append(round(pitch_degrees(physics), 1))
        speeds.append(round(float(physics.speed()), 2))
        done = terminated or truncated
    on_end = [abs(p) > ON_END for p in pitches]
    on_back = [abs(p) > ON_BACK for p in pitches]
    return {
        "env_seed": env_seed,
        "return": round(float(episode_return), 1),
        "mean_speed": round(float(np.mean(speeds)), 2),
        "fraction_on_end": round(float(np.mean(on_end)), 3),
        "first_on_end_agent_step": on_end.index(True) if any(on_end) else None,
        "fraction_on_back": round(float(np.mean(on_back)), 3),
        "pitch_deg": pitches,
        "speed": speeds,
    }


def draw(episodes: list[dict], title: str, path: Path) -> None:
    figure = Figure(figsize=(11, 4.4))
    trace, spread = figure.subplots(1, 2)
    probe.traces_by_return(trace, episodes, [np.abs(e["pitch_deg"]) for e in episodes],
                           "torso tilt |pitch| (degrees)")
    for level in (ON_END, ON_BACK):
        trace.axhline(level, ls="--", color="0.6", lw=0.8)
    trace.set_ylim(0, 185)
    trace.set_yticks([0, 30, 60, 90, 120, 150, 180])
    trace.set_title(f"tilt per episode: on one end above {ON_END:.0f}, on its back above "
                    f"{ON_BACK:.0f}", fontsize=10)
    probe.return_against(spread, [e["fraction_on_end"] for e in episodes], episodes,
                   f"fraction of the episode tipped over (tilt > {ON_END:.0f})",
                   "return against time spent tipped over")
    probe.save_figure(figure, title, path)


def main() -> None:
    parser, args = probe.command_line(__doc__, episodes=10)
    run, episodes = probe.play_episodes(parser, args, "cheetah-run", play)
    tipped = sum(e["fraction_on_end"] > 0.5 for e in episodes)
    summary = probe.write_summary(
        run, args, episodes, indent=None,
        on_end_threshold_deg=ON_END,
        on_back_threshold_deg=ON_BACK,
        episodes_tipped_over_most_of_the_time=tipped,
        episodes_that_tipped_over=sum(e["first_on_end_agent_step"] is not None
                                      for e in episodes),
        episodes_on_their_back=sum(e["fraction_on_back"] > 0 for e in episodes),
    )
    title = (f"{args.run_dir} at {run.env_steps:,} env steps\nmean return "
             f"{summary['mean_return']:.0f}; {tipped} of {len(episodes)} episodes spent more "
             "than half their time tipped over (tilt above 60 degrees)")
    draw(episodes, title, args.out.with_suffix(".png"))
    print(title.replace("\n", ": "))


if __name__ == "__main__":
    main()
