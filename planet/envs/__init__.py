"""Environments by name, all behind the Gymnasium API with the same observation layout.

Names:
    cartpole-swingup, dmc:walker-walk, ...   DeepMind Control Suite `domain-task`
    gym:Pendulum-v1                          any Gymnasium env that renders rgb_array
    toy:dot                                  a tiny NumPy pixel env for tests

Every env returned by `make_env` has:
    observation: uint8 (3, 64, 64) frames (or float32 state vectors with symbolic=True);
    action: a Box scaled to [-1, 1] (the planner's bounds);
    `action_repeat` and `agent_steps_per_episode` as attributes of the outer wrapper.
"""

from __future__ import annotations

import importlib
import os

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AddRenderObservation,
    FlattenObservation,
    RepeatAction,
    RescaleAction,
    ResizeObservation,
    TimeLimit,
)

from planet.envs.toy import DotEnv
from planet.envs.wrappers import ChannelsFirst, EnvError, Float32Observation
from planet.tasks import VALID_FORMS, default_action_repeat, parse_env_name

# pygame (Gymnasium's classic-control renderer) probes for sound and a display otherwise.
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def make_env(
    name: str,
    seed: int = 0,
    action_repeat: int = 0,
    image_size: int = 64,
    symbolic: bool = False,
    max_episode_steps: int = 1000,
) -> gym.Env:
    """Build an env by name (see module docstring). `action_repeat` 0 takes the task default;
    `max_episode_steps` counts env steps, action repeats included (1000: 125 agent steps at
    action repeat 8). An env with a shorter length of its own keeps it: the toy env's 30 steps,
    a Gymnasium env's registered time limit (Pendulum-v1: 200)."""
    repeat = action_repeat or default_action_repeat(name)
    env, own_limit = base_env(name, seed, image_size, symbolic)
    agent_steps = max(1, min(max_episode_steps, own_limit or max_episode_steps) // repeat)
    env = wrap(env, name, repeat, agent_steps, image_size, symbolic)
    env.action_repeat = repeat
    env.agent_steps_per_episode = agent_steps
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def check_env_name(name: str) -> None:
    """An EnvError for a name no env answers to, without building the env: the form, the toy
    env's name, a Gymnasium id's registration, a dm_control task's existence (when dm_control
    imports here). `planet sweep` checks every --envs entry so before it writes anything."""
    family, task = parse_env_name(name)
    if family == "toy":
        _check_toy_name(task)
    if family == "dmc":
        from planet.envs.dmc import known_task, unknown_task

        if known_task(task) is False:
            raise unknown_task(task)
    if family == "gym":
        _check_gym_id(task)


def _check_toy_name(task: str) -> None:
    if task != "dot":
        raise EnvError(f"unknown toy env {task!r}; {VALID_FORMS}")


def _check_gym_id(env_id: str) -> None:
    """The lookup gym.make does, without making the env: a 'module:Env-v0' id imports its
    module, and an id without a version means the newest one registered."""
    from gymnasium.envs.registration import find_highest_version, get_env_id, parse_env_id

    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        namespace, base, version = parse_env_id(name)
        if version is None and (newest := find_highest_version(namespace, base)) is not None:
            name = get_env_id(namespace, base, newest)
        gym.spec(name)
    except gym.error.NamespaceNotFound:
        pass  # a plugin's namespace (dm_control/...) registers when gym.make imports it
    except (gym.error.Error, ImportError) as error:
        raise EnvError(f"unknown Gymnasium env {env_id!r}: {error}; {VALID_FORMS}") from None


def base_env(name: str, seed: int, image_size: int, symbolic: bool) -> tuple[gym.Env, int | None]:
    """The env a name stands for, unwrapped, and its own episode length in env steps (None when
    it has none)."""
    family, task = parse_env_name(name)
    if family == "dmc":
        from planet.envs.dmc import make_dmc_env

        return make_dmc_env(task, seed, image_size, symbolic), None
    if family == "toy":
        _check_toy_name(task)
        env = DotEnv(size=image_size)
        return env, env.episode_steps
    env = _make_gym_env(task, symbolic)
    return env, (env.spec.max_episode_steps or None) if env.spec is not None else None


def wrap(env: gym.Env, name: str, repeat: int, agent_steps: int, image_size: int,
         symbolic: bool) -> gym.Env:
    """PlaNet's view of an env: actions in [-1, 1], each repeated `repeat` times, `agent_steps`
    agent steps per episode, and observations that are either float32 state vectors or
    (3, image_size, image_size) uint8 frames rendered once per agent step."""
    _check_action_space(name, env.action_space)
    if not np.allclose(env.action_space.low, -1) or not np.allclose(env.action_space.high, 1):
        # float32 bounds: float64 ones make gymnasium warn that it lowers their precision.
        env = RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    if repeat > 1:
        env = RepeatAction(env, repeat)
    env = TimeLimit(env, agent_steps)
    if symbolic:
        if isinstance(env.observation_space, gym.spaces.Dict):
            env = FlattenObservation(env)
        return Float32Observation(env)
    try:
        env = AddRenderObservation(env, render_only=True)
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(f"{name}: rendering needs a missing package: {error}") from None
    if env.observation_space.shape[:2] != (image_size, image_size):
        env = ResizeObservation(env, (image_size, image_size))
    return ChannelsFirst(env)


def _make_gym_env(env_id: str, symbolic: bool) -> gym.Env:
    if not os.environ.get("MUJOCO_GL"):
        # Gymnasium's MuJoCo envs (gym:HalfCheetah-v5) render through MuJoCo, which reads
        # MUJOCO_GL once, at import: without it they try GLFW and fail on a headless machine.
        from planet.envs.gl import choose_gl_backend

        choose_gl_backend(symbolic)
    try:
        env = gym.make(env_id, render_mode=None if symbolic else "rgb_array")
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(f"Gymnasium env {env_id!r} needs a package that is not installed: "
                       f"{error}") from None
    except gym.error.Error as error:
        raise EnvError(f"cannot make Gymnasium env {env_id!r}: {error}; {VALID_FORMS}") from None
    except TypeError as error:
        if "render_mode" not in str(error):
            raise
        raise EnvError(f"Gymnasium env {env_id!r} does not accept render_mode: {error}") from None
    if not symbolic and "rgb_array" not in env.metadata.get("render_modes", []):
        raise EnvError(
            f"Gymnasium env {env_id!r} cannot render rgb_array frames "
            f"(render modes: {env.metadata.get('render_modes', [])}); use --symbolic"
        )
    if symbolic and not isinstance(env.observation_space, gym.spaces.Box | gym.spaces.Dict):
        raise EnvError(f"--symbolic needs a Box observation space, {env_id!r} has "
                       f"{env.observation_space}")
    return env


def _check_action_space(name: str, space: gym.Space) -> None:
    if not isinstance(space, gym.spaces.Box):
        raise EnvError(
            f"{name}: PlaNet plans continuous actions, but the action space is {space} "
            "(it must be a bounded gymnasium.spaces.Box)"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise EnvError(f"{name}: the action space {space} is unbounded; PlaNet needs finite bounds")
