"""Errors meant for the user: the command line prints each as one line (exit status 2).

Other modules keep their own subclasses where the cause is theirs (ConfigError in planet.config,
EnvError in planet.envs, CheckpointError in planet.checkpoint, ReplayError in
planet.data.replay, RunLockedError in planet.run_lock).
"""

from __future__ import annotations


class UsageError(Exception):
    """A bad command line or input; printed as one line."""


class TrainError(RuntimeError):
    """A problem with the run folder or its state, meant for the user."""
