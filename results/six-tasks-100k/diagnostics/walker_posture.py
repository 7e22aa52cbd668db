"""How a trained walker-walk agent carries itself: noise-free episodes with the torso's height,
uprightness and forward speed at every agent step, as JSON and as a figure.

    .venv/bin/python results/six-tasks-100k/diagnostics/walker_posture.py \
        sweeps/six-tasks-100k/walker-walk/s0 --episodes 10 \
        --out results/six-tasks-100k/diagnostics/walker-walk-s0-posture

dm_control's walker `walk` reward per env step is stand * (5 * move + 1) / 6 with
stand = (3 * standing + upright) / 4: `standing` is 1 with the torso at 1.2 m or higher and falls
to 0.1 at 0.6 m, `upright` is (1 + cos of the torso's angle from vertical) / 2, and `move` is 1
at 1 m/s forward or faster, 0.5 at 0.5 m/s and 0 standing still. So a walker with an upright
torso at 0.6 m earns 0.05 per env step sitting still and 0.33 moving at 1 m/s; standing still at
full height it earns 0.17, walking at 1 m/s 1. Each episode starts with the walker in the air, its
torso and joints at random angles, and it falls in its first steps: standing height after
START_STEPS agent steps means it got up. Episode i uses env seed SEED_BASE + i and torch seed i
for the planner's CEM noise, so the file is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import probe
import torch
from matplotlib.figure import Figure

STAND_HEIGHT = 1.2  # metres: the task's torso height for full `standing` (walker._STAND_HEIGHT)
START_STEPS = 25  # agent steps an episode's start takes: the walker begins upright and falls


def play(run, env, env_seed: int, torch_seed: int) -> dict:
    torch.manual_seed(torch_seed)
    obs, _ = env.reset(seed=env_seed)
    physics = probe.physics_of(env)
    run.agent.reset(1)
    heights, uprights, speeds, episode_return, done = [], [], [], 0.0, False
    while not done:
        action = run.agent.act(obs[None], explore=False)[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += reward
        heights.append(round(float(physics.torso_height()), 3))
        uprights.append(round(float(physics.torso_upright()), 3))
        speeds.append(round(float(physics.horizontal_velocity()), 2))
        done = terminated or truncated
    standing = [height >= STAND_HEIGHT for height in heights]
    standing_after_start = [i for i, up in enumerate(standing) if up and i >= START_STEPS]
    return {
        "env_seed": env_seed,
        "return": round(float(episode_return), 1),
        "mean_height": round(float(np.mean(heights)), 3),
        "max_height": round(float(np.max(heights)), 3),
        "fraction_standing": round(float(np.mean(standing)), 3),
        "first_standing_agent_step_after_start": (standing_after_start[0]
                                                  if standing_after_start else None),
        "mean_upright": round(float(np.mean(uprights)), 3),
        "mean_speed": round(float(np.mean(speeds)), 2),
        "height_m": heights,
        "upright": uprights,
        "speed": speeds,
    }


def draw(episodes: list[dict], title: str, path: Path) -> None:
    figure = Figure(figsize=(11, 4.4))
    trace, spread = figure.subplots(1, 2)
    probe.traces_by_return(trace, episodes, [e["height_m"] for e in episodes],
                           "torso height (m)")
    trace.axhline(STAND_HEIGHT, ls="--", color="0.6", lw=0.8)
    trace.set_ylim(0, 1.5)
    trace.set_title(f"torso height per episode: standing at {STAND_HEIGHT} m or higher",
                    fontsize=10)
    probe.return_against(spread, [e["mean_speed"] for e in episodes], episodes,
                         "mean forward speed over the episode (m/s)",
                         "return against forward speed")
    probe.save_figure(figure, title, path)


def main() -> None:
    parser, args = probe.command_line(__doc__, episodes=10)
    run, episodes = probe.play_episodes(parser, args, "walker-walk", play)
    stood = sum(e["first_standing_agent_step_after_start"] is not None for e in episodes)
    speed = float(np.mean([e["mean_speed"] for e in episodes]))
    summary = probe.write_summary(
        run, args, episodes, indent=None,
        stand_height_m=STAND_HEIGHT,
        start_agent_steps=START_STEPS,
        episodes_at_standing_height_after_start=stood,
        mean_fraction_standing=round(float(np.mean([e["fraction_standing"]
                                                    for e in episodes])), 3),
        mean_speed=round(speed, 2),
    )
    title = (f"{args.run_dir} at {run.env_steps:,} env steps\nmean return "
             f"{summary['mean_return']:.0f}, mean speed {speed:.2f} m/s; torso back at standing "
             f"height ({STAND_HEIGHT} m) after the first {START_STEPS} agent steps in {stood} "
             f"of {len(episodes)} episodes")
    draw(episodes, title, args.out.with_suffix(".png"))
    print(title.replace("\n", ": "))


if __name__ == "__main__":
    main()
