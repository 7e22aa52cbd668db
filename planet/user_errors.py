"""Every error class meant for the user, in one tuple.

The command line prints any of them as one line (exit status 2). They come from the input (a
bad config, a damaged or refused run folder), so the same input raises them again: a sweep
fails such a run at once instead of retrying it. Importing this module imports torch.
"""

from __future__ import annotations

from planet.checkpoint import CheckpointError
from planet.config import ConfigError
from planet.data.replay import ReplayError
from planet.envs import EnvError
from planet.errors import TrainError, UsageError
from planet.logging import MetricsError

USER_ERRORS: tuple[type[Exception], ...] = (
    UsageError, ConfigError, EnvError, TrainError, CheckpointError, ReplayError, MetricsError)
