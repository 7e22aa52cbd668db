import os
import subprocess
import sys

import numpy as np
import pytest

from planet.envs import EnvError, check_env_name, default_action_repeat, make_env
from planet.envs.dmc import ACTION_REPEATS


def test_default_action_repeat_is_the_papers_table_and_1_elsewhere():
    assert ACTION_REPEATS == {
        "cartpole-swingup": 8, "reacher-easy": 4, "cheetah-run": 4,
        "finger-spin": 2, "ball_in_cup-catch": 4, "walker-walk": 2,
    }
    assert default_action_repeat("dmc:walker-walk") == 2
    assert default_action_repeat("hopper-hop") == 1


def test_dm_control_renders_64x64_frames_that_change_with_the_state():
    env = make_env("cartpole-swingup", seed=0)
    first, _ = env.reset(seed=0)
    assert first.shape == (3, 64, 64) and first.dtype == np.uint8
    assert first.std() > 10, "blank frame"
    frame = first
    for _ in range(5):
        frame, *_ = env.step(np.ones(1, np.float32))
    assert np.abs(frame.astype(int) - first.astype(int)).mean() > 1.0
    env.close()


def test_action_repeat_sums_rewards_and_episode_has_1000_env_steps():
    env = make_env("cartpole-swingup", seed=1)
    inner = make_env("cartpole-swingup", seed=1, action_repeat=1)
    env.reset(seed=3)
    inner.reset(seed=3)
    action = np.full(1, 0.5, np.float32)
    _, reward, *_ = env.step(action)
    inner_rewards = [inner.step(action)[1] for _ in range(8)]
    assert reward == pytest.approx(sum(inner_rewards), rel=1e-6)
    steps, done = 1, False
    while not done:
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        done = terminated or truncated
    assert steps == 125 and env.agent_steps_per_episode == 125
    env.close()
    inner.close()


def test_same_seed_same_first_frame_different_seed_different():
    a, _ = make_env("reacher-easy", seed=0).reset(seed=11)
    b, _ = make_env("reacher-easy", seed=0).reset(seed=11)
    c, _ = make_env("reacher-easy", seed=0).reset(seed=12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_gym_env_renders_resized_frames_and_rescales_actions():
    env = make_env("gym:Pendulum-v1", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8 and obs.std() > 1
    assert np.allclose(env.action_space.low, -1) and np.allclose(env.action_space.high, 1)
    assert env.agent_steps_per_episode == 200  # Pendulum's own time limit is shorter than 1000
    env.step(np.ones(1, np.float32))  # the top of [-1, 1] is Pendulum's full torque, 2
    assert env.unwrapped.last_u == pytest.approx(2.0)
    env.step(np.full(1, -0.5, np.float32))
    assert env.unwrapped.last_u == pytest.approx(-1.0)


def test_symbolic_observations_are_flat_float_vectors():
    env = make_env("cartpole-swingup", symbolic=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,) and obs.dtype == np.float32


def test_toy_env_rewards_the_centre():
    env = make_env("toy:dot", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 64, 64) and obs.max() == 255
    position = env.unwrapped.position.copy()
    _, reward, *_ = env.step(-np.sign(position).astype(np.float32))
    assert reward == pytest.approx(-np.linalg.norm(env.unwrapped.position))  # -||p|| after it
    assert reward > -np.linalg.norm(position)  # moving towards the centre pays


def unset(monkeypatch, name: str) -> None:
    """Unset `name` for this test only. monkeypatch.delenv of a variable that is not set
    records nothing, so a value the code sets during the test would outlive it."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


@pytest.mark.parametrize("name", ["cartpole-swingupp", "dmc:nothing", "atari:Pong", "gym:"])
def test_unknown_names_list_the_valid_forms(name):
    with pytest.raises(EnvError, match="valid forms: a paper task"):
        make_env(name)


@pytest.mark.parametrize("name", ["cartpole-swingupp", "dmc:nothing", "atari:Pong", "gym:",
                                  "walker-runn", "toy:dott", "gym:Pendulum-v9"])
def test_names_are_checked_without_building_an_env(name, monkeypatch):
    unset(monkeypatch, "MUJOCO_GL")
    with pytest.raises(EnvError, match="valid forms: a paper task"):
        check_env_name(name)
    assert "MUJOCO_GL" not in os.environ  # the renderer is left for the runs to choose


@pytest.mark.parametrize("name", [
    "cartpole-swingup", "dmc:walker-run", "toy:dot", "gym:Pendulum-v1",
    "gym:Pendulum",  # gym.make takes the newest version
    "gym:gymnasium.envs.classic_control:Pendulum-v1",  # a module imported for its registration
])
def test_names_that_make_env_accepts_pass_the_check(name, monkeypatch):
    unset(monkeypatch, "MUJOCO_GL")
    check_env_name(name)
    assert "MUJOCO_GL" not in os.environ


def test_a_bad_mujoco_gl_fails_the_name_check_and_is_kept(monkeypatch):
    # Not "unknown, so accept": every dm_control run of a sweep would fail in its worker.
    monkeypatch.setenv("MUJOCO_GL", "foo")
    with pytest.raises(EnvError, match="MUJOCO_GL='foo' is not a rendering backend"):
        check_env_name("walker-run")
    assert os.environ["MUJOCO_GL"] == "foo"


def test_discrete_gym_env_is_refused():
    with pytest.raises(EnvError, match="bounded gymnasium.spaces.Box"):
        make_env("gym:CartPole-v1")


def test_missing_gl_libraries_name_the_packages_to_install(monkeypatch):
    import planet.envs.gl as gl

    monkeypatch.setattr(gl, "_has_library", lambda name: False)
    unset(monkeypatch, "MUJOCO_GL")
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(EnvError, match="apt-get install -y libegl1 libopengl0"):
        make_env("cartpole-swingup")


def test_importing_dm_control_does_not_turn_on_every_deprecation_warning():
    # dm_control.composer sets simplefilter("always", DeprecationWarning) process-wide; with it,
    # torch's inductor import (the compiled planner's first call) prints 14 warnings.
    script = ("from planet.envs.dmc import import_dm_control; import_dm_control(); "
              "import torch.utils.mkldnn")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert "DeprecationWarning" not in out.stderr, out.stderr[-1000:]


def test_cheetah_keeps_its_total_mass_without_a_warning_per_env():
    # MuJoCo warns on every compile of dm_control's cheetah.xml (`settotalmass`, deprecated) and
    # dm_control logs it through absl; that one line is hidden, so MuJoCo must still apply the
    # attribute, and other absl warnings must still print.
    script = ("import logging; logging.basicConfig(); "
              "from planet.envs import make_env; "
              "env = make_env('cheetah-run', seed=0); "
              "print('total mass', env.unwrapped.physics.model.body_mass.sum()); "
              "logging.getLogger('absl').warning('another MuJoCo warning')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert "settotalmass" not in out.stderr, out.stderr[-1000:]
    assert "another MuJoCo warning" in out.stderr
    assert abs(float(out.stdout.split()[-1]) - 14.0) < 1e-6, out.stdout


@pytest.mark.parametrize("name, repeat, limit, expected", [
    ("gym:Pendulum-v1", 1, 1000, 200),  # its registered limit
    ("gym:Pendulum-v1", 2, 100, 50),  # ours, shorter
    ("gym:Pendulum-v1", 3, 1000, 66),  # 200 env steps at action repeat 3
    ("toy:dot", 4, 1000, 7),  # 30 env steps at action repeat 4: 7 whole agent steps
])
def test_episodes_last_as_many_agent_steps_as_the_env_says(name, repeat, limit, expected):
    env = make_env(name, seed=0, action_repeat=repeat, max_episode_steps=limit, symbolic=True)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    assert env.agent_steps_per_episode == expected and steps == expected


@pytest.mark.parametrize("value, symbolic, expected", [
    ("EGL", False, "egl"), ("OSMesa", False, "osmesa"), ("true", False, "glfw"),
    ("Off", True, "off"),
])
def test_a_users_mujoco_gl_is_kept_in_the_spelling_dm_control_reads(monkeypatch, value,
                                                                    symbolic, expected):
    from planet.envs.gl import choose_gl_backend

    monkeypatch.setenv("MUJOCO_GL", value)
    unset(monkeypatch, "PYOPENGL_PLATFORM")
    assert choose_gl_backend(symbolic) == expected
    assert os.environ["MUJOCO_GL"] == expected
    assert os.environ.get("PYOPENGL_PLATFORM") == (expected if expected in ("egl", "osmesa")
                                                   else None)
    if not symbolic:
        return
    with pytest.raises(EnvError, match="is not a rendering backend"):
        choose_gl_backend(symbolic=False)  # no rendering is fine for state observations only


def test_without_mujoco_gl_egl_comes_before_osmesa_and_a_display(monkeypatch):
    import planet.envs.gl as gl

    unset(monkeypatch, "MUJOCO_GL")
    unset(monkeypatch, "PYOPENGL_PLATFORM")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(gl, "_has_library", lambda name: True)
    assert gl.choose_gl_backend() == "egl" and os.environ["PYOPENGL_PLATFORM"] == "egl"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.delenv("PYOPENGL_PLATFORM")
    monkeypatch.setattr(gl, "_has_library", lambda name: name == "OSMesa")
    assert gl.choose_gl_backend() == "osmesa" and os.environ["PYOPENGL_PLATFORM"] == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(gl, "_has_library", lambda name: False)
    assert gl.choose_gl_backend() == "glfw"


def test_a_gl_backend_that_fails_at_import_is_one_clear_error(monkeypatch):
    """EGL libraries without a vendor: dm_control's import fails; we say what to install."""
    import planet.envs.dmc as dmc

    def failing_import():
        raise ImportError("Cannot initialize a headless EGL display.")

    monkeypatch.setattr(dmc, "import_dm_control", failing_import)
    monkeypatch.setenv("MUJOCO_GL", "egl")
    with pytest.raises(EnvError) as error:
        make_env("cartpole-swingup")
    message = str(error.value)
    assert "MUJOCO_GL=egl (Cannot initialize a headless EGL display.)" in message
    assert "libegl-mesa0" in message and "MUJOCO_GL=osmesa (needs libosmesa6)" in message


def test_a_gymnasium_mujoco_env_renders_headless_without_mujoco_gl():
    """Gymnasium's MuJoCo envs read MUJOCO_GL at import: make_env picks a backend first, as it
    does for dm_control (a fresh process, since this one has imported MuJoCo already)."""
    script = ("from planet.envs import make_env; env = make_env('gym:InvertedPendulum-v5'); "
              "obs, _ = env.reset(seed=0); print(obs.shape, float(obs.std()) > 1)")
    environ = {key: value for key, value in os.environ.items()
               if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=environ, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(3, 64, 64) True"


def test_a_missing_dm_control_package_is_named_as_one(monkeypatch):
    import planet.envs.dmc as dmc

    def missing():
        raise ModuleNotFoundError("No module named 'shimmy'", name="shimmy")

    monkeypatch.setattr(dmc, "import_dm_control", missing)
    with pytest.raises(EnvError, match="need the package 'shimmy', which is not installed"):
        make_env("cartpole-swingup")
