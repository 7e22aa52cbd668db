"""DeepMind Control Suite tasks as Gymnasium envs, through shimmy's compatibility wrapper.

Pixels are rendered once per agent step, directly at 64x64 from camera 0 (not once per repeated
physics step, and not large then resized): `AddRenderObservation(RepeatAction(env, R))`.
"""

from __future__ import annotations

import logging
import os
import warnings

import gymnasium as gym

from planet.errors import EnvError
from planet.tasks import ACTION_REPEATS, VALID_FORMS


def split_task(name: str) -> tuple[str, str]:
    """'ball_in_cup-catch' -> ('ball_in_cup', 'catch'): one '-' between domain and task (a
    domain's words are joined by '_'). Any other form is an EnvError, as an unknown task is."""
    if name.count("-") != 1:
        raise unknown_task(name)
    domain, task = name.split("-")
    return domain, task


def unknown_task(name: str) -> Exception:
    return EnvError(f"unknown dm_control task {name!r}; {VALID_FORMS}")


# What choose_gl_backend may set: known_task puts them back as they were.
GL_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM")


def known_task(name: str) -> bool | None:
    """Whether dm_control's suite has `domain-task` (a malformed name, or a MUJOCO_GL the user
    set that MuJoCo cannot use, is an EnvError), without building it; None when dm_control
    cannot be imported here. The GL variables are left as they were: a sweep driver that only
    checks names must not choose the renderer its workers inherit."""
    domain, task = split_task(name)
    if name in ACTION_REPEATS:
        return True
    from planet.envs.gl import choose_gl_backend

    saved = {key: os.environ.get(key) for key in GL_VARIABLES}
    try:
        # A backend whose libraries exist, so that dm_control's import does not try GLFW (it
        # still does when there is none).
        choose_gl_backend(symbolic=True)
        suite, _ = import_dm_control()
    except (ImportError, RuntimeError):
        return None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return (domain, task) in suite.ALL_TASKS


def make_dmc_env(name: str, seed: int, image_size: int, symbolic: bool) -> gym.Env:
    """dm_control's `domain-task` behind the Gymnasium API; EnvError for an unknown task."""
    from planet.envs.gl import (
        EGL_PACKAGES,
        OSMESA_PACKAGES,
        choose_gl_backend,
        missing_gl_message,
    )

    domain, task = split_task(name)  # a malformed name fails before any GL or MuJoCo work
    # Chosen even for symbolic runs: dm_control imports a GL backend either way, and GLFW warns
    # without a display.
    backend = choose_gl_backend(symbolic)
    if backend is None and not symbolic:
        raise EnvError(missing_gl_message())
    try:
        suite, DmControlCompatibilityV0 = import_dm_control()
    except ModuleNotFoundError as error:  # a package, not the renderer
        raise EnvError(f"dm_control tasks need the package {error.name!r}, which is not "
                       "installed: ./setup.sh install") from None
    except (ImportError, RuntimeError) as error:
        # EGL is picked when its libraries exist; without a vendor library (libegl-mesa0 on
        # a CPU machine) it cannot open a display, and dm_control fails at import.
        raise EnvError(
            f"dm_control could not start with MUJOCO_GL={backend} ({error}). Install "
            f"{EGL_PACKAGES} for EGL, or set MUJOCO_GL=osmesa (needs {OSMESA_PACKAGES})"
        ) from None
    if (domain, task) not in suite.ALL_TASKS:
        raise unknown_task(name)
    dm_env = suite.load(domain, task, task_kwargs={"random": seed})
    return DmControlCompatibilityV0(
        dm_env,
        render_mode="rgb_array",
        render_kwargs={"width": image_size, "height": image_size, "camera_id": 0},
    )


def import_dm_control():
    """dm_control's suite and shimmy's wrapper, without dm_control's process-wide warning filter.

    Importing dm_control.composer (shimmy does) calls warnings.simplefilter("always",
    DeprecationWarning), so every library's deprecation warnings would print for the rest of the
    process (torch.compile's first call alone prints 14). That one filter is taken out again.
    """
    from dm_control import suite
    from shimmy.dm_control_compatibility import DmControlCompatibilityV0

    composer_filter = ("always", None, DeprecationWarning, None, 0)
    while composer_filter in warnings.filters:
        warnings.filters.remove(composer_filter)
    # Python's default for other modules, re-added through the API so it sees the change.
    warnings.simplefilter("ignore", DeprecationWarning, append=True)
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, SetTotalMassNotice) for f in absl_logger.filters):
        absl_logger.addFilter(SetTotalMassNotice())
    return suite, DmControlCompatibilityV0


class SetTotalMassNotice(logging.Filter):
    """Drops MuJoCo's notice that `settotalmass` is deprecated.

    dm_control's own cheetah.xml sets `<compiler settotalmass="14"/>`; MuJoCo still applies it
    (the cheetah weighs 14 kg, tests/test_envs.py checks) but warns on every compile, which
    dm_control logs through absl: one line per cheetah env, 97 of the 112 lines of a 100-episode
    cheetah run's log. A user can do nothing about it, so it is dropped; other MuJoCo warnings
    pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "compiler attribute 'settotalmass' is deprecated" not in record.getMessage()

