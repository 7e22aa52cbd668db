"""Pick a headless OpenGL backend for MuJoCo before mujoco or dm_control is first imported.

MuJoCo reads MUJOCO_GL once, at import. Unless the user set it, we choose EGL (Mesa's software
rasteriser on a CPU machine, the NVIDIA driver on a GPU machine), then OSMesa, then GLFW when a
display exists. If none is usable, `missing_gl_message()` names the Debian packages to install.
"""

from __future__ import annotations

import ctypes.util
import os

from planet.errors import EnvError

EGL_PACKAGES = "libegl1 libopengl0 libegl-mesa0 libgl1-mesa-dri"
RENDERING_BACKENDS = ("egl", "osmesa", "glfw")
# dm_control's other spellings of glfw, and of "no rendering" (fine for state observations
# only). It compares them case-sensitively; we accept any case and write back the lower one.
GLFW_SPELLINGS = ("on", "enable", "enabled", "true", "1")
NO_RENDERING = ("0", "false", "off", "disable", "disabled")
OSMESA_PACKAGES = "libosmesa6"


def _has_library(name: str) -> bool:
    return ctypes.util.find_library(name) is not None


def check_user_backend(backend: str, symbolic: bool) -> str:
    """The user's MUJOCO_GL value as MuJoCo and dm_control read it ('EGL' -> 'egl', 'true' ->
    'glfw'); a value they cannot render with is refused before dm_control reads it (it raises
    a RuntimeError at import for unknown values)."""
    lowered = backend.strip().lower()
    if lowered in RENDERING_BACKENDS:
        return lowered
    if lowered in GLFW_SPELLINGS:
        return "glfw"
    if symbolic and lowered in NO_RENDERING:
        return lowered
    raise EnvError(
        f"MUJOCO_GL={backend!r} is not a rendering backend MuJoCo can use; set it to "
        f"{', '.join(RENDERING_BACKENDS)}, or unset it and planet picks one"
    )


def choose_gl_backend(symbolic: bool = False) -> str | None:
    """Set MUJOCO_GL (if unset) to a backend whose libraries exist; return it, or None.

    A value the user set is kept (in dm_control's spelling) when MuJoCo can use it, and refused
    (EnvError) otherwise."""
    if os.environ.get("MUJOCO_GL"):
        backend = check_user_backend(os.environ["MUJOCO_GL"], symbolic)
    elif _has_library("EGL") and _has_library("OpenGL"):
        backend = "egl"
    elif _has_library("OSMesa"):
        backend = "osmesa"
    elif os.environ.get("DISPLAY"):
        backend = "glfw"
    else:
        return None
    os.environ["MUJOCO_GL"] = backend
    if backend == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    elif backend == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    return backend


def missing_gl_message() -> str:
    return (
        "no OpenGL backend for headless MuJoCo rendering was found (tried EGL, OSMesa, and a "
        f"display for GLFW). Install one: `sudo apt-get install -y {EGL_PACKAGES}` (EGL) or "
        f"`sudo apt-get install -y {OSMESA_PACKAGES}` (OSMesa), or set MUJOCO_GL yourself."
    )
