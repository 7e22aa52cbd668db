"""Errors meant for the user: the command line prints each as one line (exit status 2).

Other modules keep their own subclasses where the cause is theirs (ConfigError in planet.config,
CheckpointError in planet.checkpoint and ReplayError in planet.data.replay, both RunFileErrors,
RunLockedError in planet.run_lock). EnvError is here, not in planet.envs, so that an env name can be
checked without importing gymnasium (planet.tasks.parse_env_name).
"""

from __future__ import annotations


class UsageError(Exception):
    """A bad command line or input; printed as one line."""


class EnvError(ValueError):
    """A bad environment name or an environment we cannot use; meant for the user."""


class RunFileError(RuntimeError):
    """A damaged or unusable file of a run folder (CheckpointError, ReplayError); meant for the
    user. `reason` is the message without the advice that follows it, for errors that list
    several problems (planet.resume.resume_point) and should give the advice once."""

    def __init__(self, reason: str, advice: str = ""):
        super().__init__(f"{reason}; {advice}" if advice else reason)
        self.reason = reason


class TrainError(RuntimeError):
    """A problem with the run folder or its state, meant for the user."""
