"""PlaNet in PyTorch: learning latent dynamics for planning from pixels (Hafner et al., 2019).

The public API, for use from Python (README, "From Python"):

    Config, make_config     the typed config with the paper's defaults; presets and overrides
    load_run                a run folder as a ready agent and world model (planet.runs)
    make_env                an env by name: "cartpole-swingup", "gym:Pendulum-v1", "toy:dot"
    Agent                   filtering and CEM planning over a world model (planet.agent)

`import planet` stays light: torch and the environments load when a name that needs them is
first used.
"""

from importlib import import_module

from planet.config import Config, make_config

__version__ = "0.1.0"
__all__ = ["Agent", "Config", "load_run", "make_config", "make_env", "__version__"]

_LAZY = {"Agent": "planet.agent", "load_run": "planet.runs", "make_env": "planet.envs"}


def __getattr__(name: str):
    """PEP 562: import the module behind a name of _LAZY on first use."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'planet' has no attribute {name!r}")
