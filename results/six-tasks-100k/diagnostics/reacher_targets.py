"""Which reacher-easy targets a trained agent reaches: noise-free episodes with the target's
position, the arm's start and the return of each, as JSON and as a map of the arena.

    .venv/bin/python results/six-tasks-100k/diagnostics/reacher_targets.py \
        sweeps/six-tasks-100k/reacher-easy/s0 --episodes 30 \
        --out results/six-tasks-100k/diagnostics/reacher-easy-s0-targets

dm_control draws each episode's target at angle U(0, 2 pi) and radius U(0.05, 0.20) around the
arm's base, and the arm's two joints at random angles; the reward is 1 per env step while the
fingertip touches the target. Episode i uses env seed SEED_BASE + i and torch seed i for the
planner's CEM noise, so the file is reproducible.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import probe
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle

REACHED = 100.0  # a return above this means the fingertip found the target


def play(run, env, env_seed: int, torch_seed: int) -> dict:
    torch.manual_seed(torch_seed)
    obs, _ = env.reset(seed=env_seed)
    physics = probe.physics_of(env)
    target = physics.named.model.geom_pos["target", ["x", "y"]].copy()
    finger = physics.named.data.geom_xpos["finger", :2].copy()
    run.agent.reset(1)
    episode_return, distances, first_reward, step, done = 0.0, [], None, 0, False
    while not done:
        action = run.agent.act(obs[None], explore=False)[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += reward
        distances.append(float(physics.finger_to_target_dist()))
        if reward > 0 and first_reward is None:
            first_reward = step
        step += 1
        done = terminated or truncated
    return {
        "env_seed": env_seed,
        "return": round(float(episode_return), 1),
        "target_xy": [round(float(v), 4) for v in target],
        "target_radius": round(float(np.hypot(*target)), 4),
        "target_angle_deg": round(math.degrees(math.atan2(target[0], target[1])) % 360, 1),
        "finger_start_xy": [round(float(v), 4) for v in finger],
        "start_distance": round(float(np.linalg.norm(finger - target)), 4),
        "min_distance": round(min(distances), 4),
        "first_reward_agent_step": first_reward,
    }


def draw(episodes: list[dict], title: str, path: Path) -> None:
    figure = Figure(figsize=(10, 4.6))
    axes = figure.subplots(1, 2)
    reached = [e for e in episodes if e["return"] > REACHED]
    missed = [e for e in episodes if e["return"] <= REACHED]
    arena = axes[0]
    for ring in (0.05, 0.20):
        arena.add_patch(Circle((0, 0), ring, fill=False, ls="--", color="0.6"))
    arena.plot(0, 0, "k+", ms=10)
    for group, colour, label in ((reached, "tab:green", "reached"), (missed, "tab:red", "missed")):
        xs = [e["target_xy"][0] for e in group]
        ys = [e["target_xy"][1] for e in group]
        arena.scatter(xs, ys, c=colour, s=40, label=f"{label} ({len(group)})")
        for e in group:
            arena.plot([e["finger_start_xy"][0], e["target_xy"][0]],
                       [e["finger_start_xy"][1], e["target_xy"][1]],
                       color=colour, lw=0.5, alpha=0.4)
    arena.set_aspect("equal")
    arena.set_xlim(-0.25, 0.25)
    arena.set_ylim(-0.25, 0.25)
    arena.set_title("target positions (thin line: from the fingertip's start)")
    arena.legend(loc="lower right", fontsize=8)
    probe.return_against(axes[1], [e["start_distance"] for e in episodes], episodes,
                   "fingertip-to-target distance at the start", "return against the start distance",
                   c=["tab:green" if e["return"] > REACHED else "tab:red" for e in episodes], s=30)
    probe.save_figure(figure, title, path)


def main() -> None:
    parser, args = probe.command_line(__doc__, episodes=30)
    run, episodes = probe.play_episodes(parser, args, "reacher-easy", play)
    reached = sum(e["return"] > REACHED for e in episodes)
    summary = probe.write_summary(run, args, episodes, indent=1, reached=reached,
                            reached_threshold=REACHED)
    title = (f"{args.run_dir} at {run.env_steps:,} env steps: {reached} of "
             f"{len(episodes)} targets reached, mean return {summary['mean_return']:.0f}")
    draw(episodes, title, args.out.with_suffix(".png"))
    print(title)


if __name__ == "__main__":
    main()
