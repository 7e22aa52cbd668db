"""The paper's tasks, their action repeats, and what an env name says (family, task, action
repeat, folder name): plain data, importable without gymnasium.

planet.envs re-exports the table (planet.envs.dmc.ACTION_REPEATS); `planet bench` reads it from
here, so that a machine with PyTorch alone (a GPU loan) can time the model figures.
"""

from __future__ import annotations

from planet.errors import EnvError

# The paper's action repeats. ball_in_cup is 4 in the paper and in the official code's last
# version; its first releases and some ports use 6 (docs/choices.md).
ACTION_REPEATS = {
    "cartpole-swingup": 8,
    "reacher-easy": 4,
    "cheetah-run": 4,
    "finger-spin": 2,
    "ball_in_cup-catch": 4,
    "walker-walk": 2,
}


# The env names planet understands, for errors about a name it does not.
VALID_FORMS = (
    "valid forms: a paper task (" + ", ".join(ACTION_REPEATS) + "), any other dm_control task "
    "as `domain-task` or `dmc:domain-task`, a Gymnasium env as `gym:ID` (e.g. gym:Pendulum-v1), "
    "or `toy:dot`"
)


def env_folder_name(env_name: str) -> str:
    """An env name as one folder name, for run and sweep folders: 'gym:Pendulum-v1' ->
    'gym_Pendulum-v1', 'dmc:walker-walk' -> 'dmc_walker-walk'."""
    return env_name.replace(":", "_").replace("/", "_")


def parse_env_name(name: str) -> tuple[str, str]:
    """'dmc:cartpole-swingup' / 'cartpole-swingup' -> ('dmc', 'cartpole-swingup'), etc.; an
    EnvError naming the valid forms for anything else."""
    if ":" in name:
        family, _, task = name.partition(":")
    else:
        family, task = "dmc", name
    if family not in ("dmc", "gym", "toy") or not task:
        raise EnvError(f"unknown environment {name!r}; {VALID_FORMS}")
    return family, task


def default_action_repeat(name: str) -> int:
    """The paper's action repeat for a paper task (in either form), else 1."""
    family, task = parse_env_name(name)
    return ACTION_REPEATS.get(task, 1) if family == "dmc" else 1


def task_of(env_name: str) -> str:
    """'dmc:cartpole-swingup' -> 'cartpole-swingup'; other names are returned unchanged."""
    return env_name.split(":", 1)[1] if env_name.startswith("dmc:") else env_name
