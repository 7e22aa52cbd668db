"""Errors meant for the user: the command line prints each as one line (exit status 2).

Other modules keep their own subclasses where the cause is theirs (ConfigError in planet.config,
CheckpointError in planet.checkpoint, ReplayError in planet.data.replay, RunLockedError in
planet.run_lock). EnvError is here, not in planet.envs, so that an env name can be checked
without importing gymnasium (planet.tasks.parse_env_name).
"""

from __future__ import annotations


class UsageError(Exception):
    """A bad command line or input; printed as one line."""


class EnvError(ValueError):
    """A bad environment name or an environment we cannot use; meant for the user."""


class TrainError(RuntimeError):
    """A problem with the run folder or its state, meant for the user."""
