"""Time the world-model update, the planner and the env step: reference path vs fast path.

Everything runs in one process, the two paths interleaved (ref, fast, ref, fast, ...), so that
a noisy, shared machine slows both alike; the table gives medians and the ratio fast / ref.

    reference   float32, eager, NCHW, nn.ConvTranspose2d as written; env renders every physics
                step at 320x240 and resizes (what a straightforward port does)
    fast        what `planet train` uses by default: bf16 autocast where the hardware is fast
                at it (float32 weights and loss), channels-last, the decoder's transposed convs
                as a matmul and sub-pixel convs (planet.fast_paths), the batched planner (its
                rollout torch.compile'd where machine.compile_planner is on: the cpu preset); one
                64x64 render per step; glibc malloc keeping freed memory for reuse (process-wide,
                so both paths' timings here get it; the peak-RSS figure runs each path in its
                own process)

For every model figure it also counts the FLOPs of the matrix products and convolutions
(forward and backward, torch.utils.flop_counter), measures a matmul peak for each dtype, and
gives the floor = FLOPs / peak and the achieved FLOP/s. The numerical checks run the two paths
on the same batch and the same seeds: loss terms within a relative tolerance, gradients close
in cosine, and the planner's first actions close.

    planet bench                                 # the paper configuration, cartpole-swingup
    planet bench --preset smoke --repeats 2 --json bench.json
    python -m planet.bench --set planner.candidates=500
    planet bench --set machine.compile_planner=true   # the paper configuration, compiled planner
    planet bench --device cuda \
        --switches machine.fast_deconv,machine.channels_last,machine.compile_planner

On CUDA every timed call ends with torch.cuda.synchronize(), so a figure is the wall time until
the GPU has finished (kernels run asynchronously: without it the host clock would stop when the
last kernel is queued). The peak-memory figures there are the CUDA allocator's peak during each
path's updates instead of host RSS. `--switches` times the fast path again with each listed
boolean switch flipped (interleaved with the fast path itself), for switches whose defaults
come from CPU figures: which setting is faster on this device is in the JSON's "switches".
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet.config import (
    RENAMED_FIELDS,
    Config,
    ConfigError,
    apply_overrides,
    apply_preset,
    field_docs,
    flatten,
    parse_assignments,
)
from planet.errors import UsageError
from planet.measure import (
    CudaPeakMemory,
    PeakRSS,
    count_flops,
    device_sync,
    interleaved,
    matmul_peak,
    peak_rss,
    quartiles,
    system_info,
)
from planet.tasks import default_action_repeat, parse_env_name

# Tolerances of the numerical checks, and why.
# bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 % per operand); the losses sum
# thousands of such products, whose errors mostly average out: 2 % leaves room for the worst
# term (the KL near its free-nats clamp is compared with an absolute tolerance instead).
LOSS_RTOL = 0.02
KL_ATOL = 0.05
GRAD_COSINE_MIN = 0.99  # direction of the whole gradient vector, reference vs fast
# CEM picks the top K of J candidates by summed predicted reward; bf16 rounding can swap
# near-equal candidates, so the first actions agree only approximately (actions lie in [-1, 1]).
ACTION_ATOL = 0.25


REFERENCE_OVERRIDES = {
    "machine.precision": "float32",
    "machine.fast_deconv": False,
    "machine.channels_last": False,
    "machine.reuse_host_memory": False,
    "machine.compile_planner": False,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="paper",
                        help="config preset(s), comma-separated (default: paper, the paper's "
                        "full-size configuration, the slow one on a CPU; --preset cpu times what "
                        "`planet train` uses without a GPU)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set planner.candidates=500")
    parser.add_argument("--env", help="task to time the env step on, and whose action repeat "
                        "and episode length the episode figure counts (default: the config's)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats per figure and path, after one warm-up (default 5)")
    parser.add_argument("--env-steps", type=int, default=20,
                        help="timed env steps per path (default 20)")
    parser.add_argument("--batch-envs", type=int, default=5,
                        help="envs planned for at once in the batched planner figure (default 5)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-env", action="store_true", help="do not time the env step")
    parser.add_argument("--skip-memory", action="store_true",
                        help="do not measure training's peak RSS in child processes")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="device to time on (default auto: CUDA when present, else CPU)")
    parser.add_argument("--switches", default="", metavar="KEYS",
                        help="comma-separated boolean config fields: time the fast path again "
                        "with each one flipped, e.g. machine.fast_deconv,machine.compile_planner")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="print every timed call")


# --- the two paths -------------------------------------------------------------------------
class BenchPath:
    """One path (reference or fast): model, learner, planner and agent from one config.

    The model gets `state_dict` when given, so that two paths can start from the same weights.
    """

    def __init__(self, config: Config, action_size: int, device: torch.device,
                 state_dict: dict | None, log: Callable[[str], None] | None = None):
        from planet.agent import Agent
        from planet.learner import Learner
        from planet.models.world_model import WorldModel
        from planet.utils import autocast_factory, resolve_precision

        self.config = config
        self.dtype = resolve_precision(config.machine.precision, device)
        self.autocast = autocast_factory(device, self.dtype)
        self.model = WorldModel(config.model, action_size, (3, 64, 64), config.machine).to(device)
        if state_dict is not None:
            self.model.load_state_dict(state_dict)
        self.learner = Learner(self.model, config.train, device, self.autocast)
        self.agent = Agent(self.model, config, device, self.autocast, log)
        self.planner = self.agent.planner  # timed alone, and inside the agent's step




def random_replay(config: Config, action_size: int, seed: int):
    """An EpisodeReplay of 5 episodes of random frames, actions and rewards, seeded by `seed`.

    Each episode is as long as the config's (max_episode_steps / action repeat steps, and at
    least one chunk), so chunk sampling behaves as in training; the timings do not depend on
    what the frames show.
    """
    from planet.data.replay import EpisodeReplay

    rng = np.random.default_rng(seed)
    replay = EpisodeReplay(bit_depth=config.train.bit_depth)
    steps = max(config.train.chunk_length, agent_steps_per_episode(config))
    for _ in range(5):
        replay.add({
            "obs": rng.integers(0, 256, (steps + 1, 3, 64, 64), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (steps + 1, action_size)).astype(np.float32),
            "reward": rng.uniform(0, 1, steps + 1).astype(np.float32),
        })
    return replay


def agent_steps_per_episode(config: Config) -> int:
    """The agent steps (planner calls) in one episode as the config gives them: max_episode_steps
    / action repeat, without building the env (an env's own shorter limit, toy:dot's 30 or
    Pendulum's 200, is not seen; make_env's agent_steps_per_episode is the env's figure). The
    repeat comes from planet.tasks, not planet.envs (which needs gymnasium): a GPU machine with
    only PyTorch can still time the model figures."""
    repeat = config.env.action_repeat or default_action_repeat(config.env.name)
    return config.env.max_episode_steps // repeat


def missing_env_packages(env_name: str) -> list[str]:
    """Python packages the env figure needs for `env_name` that are not installed."""
    import importlib.util

    family, _ = parse_env_name(env_name)
    needed = ["gymnasium"] + (["dm_control", "mujoco", "shimmy"] if family == "dmc" else [])
    return [name for name in needed if importlib.util.find_spec(name) is None]


def loss_check(ref: BenchPath, fast: BenchPath, chunks, seed: int) -> dict[str, Any]:
    """Same weights, batch and seeds: loss terms and gradients of both paths."""
    results, grads = {}, {}
    for name, path in (("reference", ref), ("fast", fast)):
        torch.manual_seed(seed)
        obs, action, reward = path.learner.to_device(chunks)
        losses = path.learner.compute_losses(obs, action, reward)
        path.model.zero_grad(set_to_none=True)
        losses.total.backward()
        results[name] = losses.as_floats()
        grads[name] = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
            for p in path.model.parameters()
        ])
        path.model.zero_grad(set_to_none=True)
    terms = {}
    ok = True
    for key, ref_value in results["reference"].items():
        fast_value = results["fast"][key]
        diff = abs(fast_value - ref_value)
        tolerance = KL_ATOL if key in ("kl", "overshooting") else LOSS_RTOL * abs(ref_value)
        term_ok = diff <= max(tolerance, 1e-6)
        ok &= term_ok
        terms[key] = {"reference": ref_value, "fast": fast_value, "ok": term_ok}
    cosine = float(torch.nn.functional.cosine_similarity(
        grads["reference"], grads["fast"], dim=0
    ))
    return {
        "losses": terms,
        "loss_rtol": LOSS_RTOL,
        "kl_atol": KL_ATOL,
        "grad_cosine": cosine,
        "grad_cosine_min": GRAD_COSINE_MIN,
        "ok": bool(ok and cosine >= GRAD_COSINE_MIN),
    }


def planner_check(ref: BenchPath, fast: BenchPath, belief, state, seed: int) -> dict[str, Any]:
    """First planned actions (B, A) of both paths, from the same belief, state and seeds.

    belief (B, belief_size), state (B, state_size); ok when they differ by at most ACTION_ATOL.
    """
    actions = {}
    for name, path in (("reference", ref), ("fast", fast)):
        torch.manual_seed(seed)
        generator = torch.Generator(device=belief.device).manual_seed(seed)
        actions[name] = path.planner(belief, state, generator)
    diff = float((actions["reference"] - actions["fast"]).abs().max())
    return {"max_abs_diff": diff, "atol": ACTION_ATOL, "ok": diff <= ACTION_ATOL}


def training_peak_rss(config: Config, updates: int = 2) -> int:
    """Peak RSS (bytes) of a fresh process that runs only `updates` updates of this config.

    In the bench process both paths' models and the allocator's cached blocks add up, so the
    training footprint is measured in a child process that holds one path only.
    """
    import subprocess

    code = ("import sys; from planet.bench import updates_then_peak_rss; "
            "print(updates_then_peak_rss(sys.argv[1], int(sys.argv[2])))")
    out = subprocess.run([sys.executable, "-c", code, config.to_json(), str(updates)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def updates_then_peak_rss(config_json: str, updates: int) -> int:
    """training_peak_rss's child process: `updates` updates of one path on a random replay,
    then this process's peak RSS (bytes)."""
    config = Config.from_dict(json.loads(config_json))
    if config.machine.reuse_host_memory:
        from planet.utils import reuse_freed_host_memory

        reuse_freed_host_memory()
    path = BenchPath(config, 1, torch.device("cpu"), None)
    replay = random_replay(config, 1, 0)
    rng = np.random.default_rng(0)
    for _ in range(updates):
        path.learner.update(replay.sample(config.train.batch_size, config.train.chunk_length,
                                          rng))
    return peak_rss()


# --- the env step --------------------------------------------------------------------------
def _env_figures(config: Config, env_name: str, steps: int, seed: int) -> dict[str, Any]:
    """Median seconds per agent step: one 64x64 render (fast) vs a render per physics step."""
    from planet.envs import make_env

    repeat = config.env.action_repeat
    env = make_env(env_name, seed=seed, action_repeat=repeat, image_size=64)
    repeat = env.action_repeat
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)

    def fast_step():
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        if terminated or truncated:
            env.reset()

    functions = {"fast": fast_step}
    family, _ = parse_env_name(env_name)
    if family == "dmc":
        from PIL import Image

        dm_env = env.unwrapped._env  # shimmy's DmControlCompatibilityV0 holds the dm_env
        spec = dm_env.action_spec()

        def reference_step():
            action = rng.uniform(spec.minimum, spec.maximum, spec.shape)
            for _ in range(repeat):  # render every physics step at 320x240, keep the last
                timestep = dm_env.step(action)
                frame = dm_env.physics.render(240, 320, camera_id=0)
            Image.fromarray(frame).resize((64, 64), Image.BILINEAR)
            if timestep.last():
                dm_env.reset()

        functions = {"reference": reference_step, "fast": fast_step}
    times = interleaved(functions, steps, warmup=2)
    env.close()
    return {name: statistics.median(values) for name, values in times.items()} | {
        "action_repeat": repeat, "samples": times,
    }


# --- the timed calls ---------------------------------------------------------------------
@dataclass
class Inputs:
    """What the timed calls consume: replay chunks, posterior (belief, state), one frame."""

    replay: Any
    rng: np.random.Generator
    batch: int
    length: int
    belief: torch.Tensor  # (batch_envs, belief)
    state: torch.Tensor  # (batch_envs, state)
    frame: np.ndarray  # (1, 3, 64, 64) uint8

    @property
    def batch_envs(self) -> int:
        return self.belief.shape[0]


def make_inputs(config: Config, path: BenchPath, action_size: int, batch_envs: int,
                seed: int) -> Inputs:
    replay = random_replay(config, action_size, seed)
    rng = np.random.default_rng(seed)
    # Planner inputs: posterior belief and state after filtering a few random frames.
    with torch.no_grad():
        chunks = replay.sample(batch_envs, 4, rng)
        obs, action, _ = path.learner.to_device(chunks)
        out = path.model.observe(obs, action)
    frame = replay.sample(1, 1, rng).obs[0]
    return Inputs(replay, rng, config.train.batch_size, config.train.chunk_length,
                  out.beliefs[-1], out.states[-1], frame)


def figure_calls(paths: dict[str, BenchPath], inputs: Inputs) -> dict[str, tuple[str, dict]]:
    """key -> (label, {path name: zero-argument call}) for each model figure."""

    def update(path: BenchPath):
        return lambda: path.learner.update(
            inputs.replay.sample(inputs.batch, inputs.length, inputs.rng))

    def plan(path: BenchPath, envs: int):
        return lambda: path.planner(inputs.belief[:envs], inputs.state[:envs])

    def act(path: BenchPath):
        def call():
            path.agent.reset(1)
            path.agent.act(inputs.frame, explore=True)
        return call

    envs = inputs.batch_envs
    return {
        "update": ("world-model update (sample, fwd, bwd, Adam)",
                   {name: update(path) for name, path in paths.items()}),
        "plan_1": ("planning call, 1 env", {name: plan(path, 1) for name, path in paths.items()}),
        f"plan_{envs}": (f"planning call, {envs} envs",
                         {name: plan(path, envs) for name, path in paths.items()}),
        "act": ("agent act (encode, filter, plan), 1 env",
                {name: act(path) for name, path in paths.items()}),
    }


def flops_of(key: str, path: BenchPath, inputs: Inputs) -> int | None:
    """FLOPs of one call of figure `key` on `path` (None for act: the planner's, mostly)."""
    if key == "update":
        def step():
            obs, action, reward = path.learner.to_device(
                inputs.replay.sample(inputs.batch, inputs.length, inputs.rng))
            path.learner.compute_losses(obs, action, reward).total.backward()
            path.model.zero_grad(set_to_none=True)
        return count_flops(step)
    if key.startswith("plan_"):
        envs = int(key.removeprefix("plan_"))
        return count_flops(lambda: path.planner(inputs.belief[:envs], inputs.state[:envs]))
    return None


# --- switches measured only on CPU ---------------------------------------------------------
# A switch's default changes per device only on a clear figure: the model work of one episode
# (C updates + one episode of act calls, no env), paired round by round (the variants are
# interleaved, so each round's calls saw the same machine), must take under 0.95x with the
# switch flipped in the median round and less than 1x in three rounds out of four, over at
# least MIN_ROUNDS rounds.
SWITCH_EPISODE_RATIO = 0.95
MIN_ROUNDS = 5
SWITCH_RULE = (f"change a default on this device only when, over at least {MIN_ROUNDS} "
               f"interleaved rounds, the flipped switch takes under {SWITCH_EPISODE_RATIO}x in "
               "the median round and under 1x in three rounds of four")


def switch_figures(config: Config, switches: list[str], fast: BenchPath, inputs: Inputs,
                   repeats: int, log: Callable[[str], None], verbose: bool,
                   sync: Callable[[], None] | None) -> dict[str, Any]:
    """Time the fast path against itself with each switch flipped, all interleaved."""
    flat = flatten(config.to_dict())
    paths = {"default": fast}
    for key in switches:
        flipped = copy.deepcopy(config)
        apply_overrides(flipped, {key: not flat[key]})
        paths[key] = BenchPath(flipped, fast.model.action_size, fast.learner.device,
                               fast.model.state_dict(), log)
    times = {}
    for key, (label, calls) in figure_calls(paths, inputs).items():
        log(f"timing {label} with each switch flipped ({', '.join(switches)}) ...")
        times[key] = interleaved(calls, repeats, log=log if verbose else None, sync=sync)
    steps = agent_steps_per_episode(config)
    updates = config.train.collect_interval

    def episodes(name: str) -> list[float]:  # one episode's model work per round
        return [updates * update + steps * act
                for update, act in zip(times["update"][name], times["act"][name], strict=True)]

    result: dict[str, Any] = {}
    for key in switches:
        figures = {}
        for figure, samples in times.items():
            default, flipped = quartiles(samples["default"]), quartiles(samples[key])
            figures[figure] = {
                "default": default[1], "flipped": flipped[1], "ratio": flipped[1] / default[1],
                "default_quartiles": default, "flipped_quartiles": flipped,
            }
        ratios = [f / d for f, d in zip(episodes(key), episodes("default"), strict=True)]
        ratio_quartiles = quartiles(ratios)
        result[key] = {
            "default": flat[key], "flipped": not flat[key], "figures": figures,
            "episode_model_seconds": {"default": statistics.median(episodes("default")),
                                      "flipped": statistics.median(episodes(key))},
            "episode_ratio": ratio_quartiles[1],
            "episode_ratio_quartiles": ratio_quartiles,
            "faster": "flipped" if ratio_quartiles[1] < 1 else "default",
            "change_default": switch_verdict(ratios),
        }
    return result


def switch_verdict(ratios: list[float]) -> bool:
    """SWITCH_RULE on the rounds' flipped/default ratios of one episode's model work."""
    if len(ratios) < MIN_ROUNDS:
        return False
    _, median, upper = quartiles(ratios)
    return bool(median < SWITCH_EPISODE_RATIO and upper < 1.0)


# --- main ----------------------------------------------------------------------------------
def log_system(info: dict[str, Any], device: torch.device, log: Callable[[str], None]) -> None:
    log(f"cpu: {info['cpu']} ({info['cpu_count']} cores), threads {info['threads']}, "
        f"torch {info['torch']}, fast dtype {info['fast_dtype']}, load {info['load_average']}")
    if device.type == "cuda":
        log(f"gpu: {info['gpu']} ({info['gpu_memory_bytes'] / 2**30:.0f} GiB, "
            f"{info['gpu_multiprocessors']} SMs), CUDA {info['cuda']}, cuDNN {info['cudnn']}")


def env_step_figure(config: Config, env_name: str, env_steps: int, seed: int, skip_env: bool,
                    log: Callable[[str], None]) -> tuple[dict[str, Any] | None, str]:
    """The env step with rendering, both paths: (figure, '') or (None, why it was skipped)."""
    if skip_env:
        return None, "--skip-env"
    missing = missing_env_packages(env_name)
    if missing:
        why = f"{', '.join(missing)} not installed"
        log(f"env step: skipped ({why}); the model figures do not need it")
        return None, why
    log("timing env step ...")
    figure = _env_figures(config, env_name, env_steps, seed)
    figure["label"] = f"env step with render (repeat {figure['action_repeat']})"
    if "reference" in figure:
        figure["ratio"] = figure["fast"] / figure["reference"]
    return figure, ""


def run_bench(config: Config, repeats: int = 5, env_steps: int = 20, batch_envs: int = 5,
              env_name: str | None = None, skip_env: bool = False, seed: int = 0,
              log: Callable[[str], None] = print, verbose: bool = False,
              memory: bool = True, device: torch.device | None = None,
              switches: list[str] | None = None) -> dict[str, Any]:
    """All figures as a dict (the JSON that --json writes): the two paths' checks, then the
    model figures, peak memory, the env step, and the whole episode they add up to."""
    device = device or torch.device("cpu")
    sync = device_sync(device)
    ref_config = copy.deepcopy(config)
    apply_overrides(ref_config, REFERENCE_OVERRIDES)
    if config.machine.reuse_host_memory:
        # Process-wide, so the reference path's timings here get it too; only the peak-RSS
        # figure, measured in child processes, shows each path with its own setting.
        from planet.utils import reuse_freed_host_memory

        reuse_freed_host_memory()
    action_size = 1  # cartpole's; the figures hardly depend on it
    torch.manual_seed(seed)
    ref = BenchPath(ref_config, action_size, device, None)
    fast = BenchPath(config, action_size, device, ref.model.state_dict(), log)
    info = system_info(fast.dtype, device)
    log_system(info, device, log)

    inputs = make_inputs(config, ref, action_size, batch_envs, seed)
    chunks = inputs.replay.sample(inputs.batch, inputs.length, inputs.rng)
    checks = {"losses": loss_check(ref, fast, chunks, seed)}
    checks["planner"] = planner_check(ref, fast, inputs.belief[:1], inputs.state[:1], seed)

    paths = {"reference": ref, "fast": fast}
    monitors = {name: CudaPeakMemory(device) if device.type == "cuda" else PeakRSS()
                for name in paths}
    figures, peaks = model_figures(paths, inputs, repeats, monitors, device, sync, log, verbose,
                                   info["fast_dtype"])
    peak_memory = {name: monitors[name].peak for name in paths}
    rss = {"process_max_rss": peak_rss()}
    if device.type == "cpu":
        rss.update(peak_memory)
        if memory:
            log("measuring training peak RSS in child processes ...")
            rss["training_reference"] = training_peak_rss(ref_config)
            rss["training_fast"] = training_peak_rss(config)

    skipped: dict[str, str] = {}
    env_figure, why_not = env_step_figure(config, env_name or config.env.name, env_steps, seed,
                                          skip_env, log)
    if env_figure is None:
        skipped["env_step"] = why_not
    else:
        figures["env_step"] = env_figure
    figures["episode"] = episode_figure(config, figures, paths)
    result = {
        "system": info,
        "config": config.to_dict(),
        "reference_overrides": REFERENCE_OVERRIDES,
        "repeats": repeats,
        "matmul_peak_flops_per_s": peaks,
        "figures": figures,
        "peak_rss_bytes": rss,
        "checks": checks,
        "skipped": skipped,
    }
    if device.type == "cuda":
        result["cuda_peak_bytes"] = peak_memory  # allocator peak during each path's updates
    if switches:
        result["switches"] = switch_figures(config, switches, fast, inputs, repeats, log,
                                            verbose, sync)
        result["switch_rule"] = SWITCH_RULE
    return result


def model_figures(paths: dict[str, BenchPath], inputs, repeats: int, monitors: dict, device,
                  sync, log, verbose: bool, fast_dtype: str
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """The update and planning figures, both paths interleaved, with FLOP counts and the floor
    each would have at the best matmul peak seen; returns (figures, peaks)."""
    ref, fast = paths["reference"], paths["fast"]
    # The peak is measured again before every figure and the best kept: on a shared machine one
    # measurement can catch a moment when a core is busy elsewhere and come out ~2x low.
    peaks = {"reference": 0.0, "fast": 0.0}

    def measure_peaks() -> None:
        peaks["reference"] = max(peaks["reference"], matmul_peak(torch.float32, device=device))
        peaks["fast"] = max(peaks["fast"], matmul_peak(fast.dtype, device=device))

    measure_peaks()
    figures: dict[str, dict[str, Any]] = {}
    calls = figure_calls(paths, inputs)
    flops = {key: flops_of(key, ref, inputs) for key in calls}
    for key, (label, functions) in calls.items():
        measure_peaks()
        log(f"timing {label} ...")
        times = interleaved(functions, repeats, monitors=monitors if key == "update" else None,
                            log=log if verbose else None, sync=sync)
        figure: dict[str, Any] = {"label": label, "samples": times}
        for name in paths:
            figure[name] = statistics.median(times[name])
        figure["ratio"] = figure["fast"] / figure["reference"]
        if flops[key]:
            figure["flops"] = flops[key]
            for name in paths:
                figure[f"{name}_flops_per_s"] = flops[key] / figure[name]
        figures[key] = figure
    for figure in figures.values():  # floors from the best peak seen
        if "flops" in figure:
            for name in paths:
                figure[f"{name}_floor"] = figure["flops"] / peaks[name]
    log(f"matmul peak (best of {len(calls) + 1} measurements): float32 "
        f"{peaks['reference'] / 1e9:.0f} GFLOP/s, {fast_dtype} "
        f"{peaks['fast'] / 1e9:.0f} GFLOP/s")
    return figures, peaks


def episode_figure(config: Config, figures: dict[str, dict[str, Any]], paths) -> dict[str, Any]:
    """One episode of Alg. 1 from the figures: C updates plus one collected episode of planned,
    rendered steps (the fast env step for both paths when there is no reference one)."""
    steps = agent_steps_per_episode(config)
    no_env = "" if "env_step" in figures else ", no env time"
    episode = {"label": f"episode: {config.train.collect_interval} updates + {steps} steps"
                        f"{no_env}"}
    for name in paths:
        env_time = figures.get("env_step", {}).get(name, figures.get("env_step", {}).get("fast"))
        episode[name] = (
            config.train.collect_interval * figures["update"][name]
            + steps * (figures["act"][name] + (env_time or 0.0))
        )
    episode["ratio"] = episode["fast"] / episode["reference"]
    return episode


def format_table(result: dict[str, Any]) -> str:
    rows = [("figure", "ref s", "fast s", "fast/ref", "GFLOP", "fast GF/s", "floor s",
             "fast/floor")]
    for figure in result["figures"].values():
        flops = figure.get("flops")
        rows.append((
            figure["label"],
            f"{figure['reference']:.4f}" if figure.get("reference") is not None else "-",
            f"{figure['fast']:.4f}",
            f"{figure['ratio']:.2f}" if "ratio" in figure else "-",
            f"{flops / 1e9:.1f}" if flops else "-",
            f"{figure['fast_flops_per_s'] / 1e9:.0f}" if flops else "-",
            f"{figure['fast_floor']:.3f}" if flops else "-",
            f"{figure['fast'] / figure['fast_floor']:.2f}" if flops else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    memory = result["peak_rss_bytes"]
    if "training_fast" in memory:
        lines.append(f"peak RSS of training alone (child process, 2 updates): reference "
                     f"{memory['training_reference'] / 2**30:.2f} GiB, fast "
                     f"{memory['training_fast'] / 2**30:.2f} GiB")
    if "reference" in memory:
        lines.append(f"RSS in this process during updates (both paths loaded): reference "
                     f"{memory['reference'] / 2**30:.2f} GiB, fast "
                     f"{memory['fast'] / 2**30:.2f} GiB")
    if "cuda_peak_bytes" in result:
        cuda = result["cuda_peak_bytes"]
        lines.append(f"CUDA allocator peak during updates (both paths loaded): reference "
                     f"{cuda['reference'] / 2**30:.2f} GiB, fast {cuda['fast'] / 2**30:.2f} GiB")
    for figure, reason in result.get("skipped", {}).items():
        lines.append(f"{figure}: skipped ({reason})")
    losses = result["checks"]["losses"]
    terms = ", ".join(f"{k} {v['reference']:.3f}/{v['fast']:.3f}"
                      for k, v in losses["losses"].items())
    lines.append(f"loss check (ref/fast, rtol {losses['loss_rtol']}, kl atol "
                 f"{losses['kl_atol']}): {terms}; grad cosine {losses['grad_cosine']:.4f}: "
                 f"{'ok' if losses['ok'] else 'FAILED'}")
    planner = result["checks"]["planner"]
    lines.append(f"planner check: first actions differ by {planner['max_abs_diff']:.3f} "
                 f"(atol {planner['atol']}): {'ok' if planner['ok'] else 'FAILED'}")
    if "switches" in result:
        lines.append(format_switches(result["switches"]))
    return "\n".join(lines)


def format_switches(switches: dict[str, Any]) -> str:
    """One row per switch and figure: default vs flipped median and ratio, then the verdict."""
    rows = [("switch: default -> flipped", "figure", "default s", "flipped s", "flip/def", "")]
    for key, switch in switches.items():
        name = f"{key}: {switch['default']} -> {switch['flipped']}"
        for figure, values in switch["figures"].items():
            rows.append((name, figure, f"{values['default']:.4f}", f"{values['flipped']:.4f}",
                         f"{values['ratio']:.2f}", ""))
            name = ""
        seconds = switch["episode_model_seconds"]
        low, _, high = switch["episode_ratio_quartiles"]
        rows.append(("", "episode model work", f"{seconds['default']:.3f}",
                     f"{seconds['flipped']:.3f}", f"{switch['episode_ratio']:.2f}",
                     f"({low:.2f}-{high:.2f}) " + (
                         "change the default" if switch["change_default"]
                         else "keep the default")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     for row in rows)


def parse_switches(text: str, config: Config) -> list[str]:
    """'machine.fast_deconv,machine.channels_last' -> the keys, each a boolean field."""
    kinds = {name: kind for name, kind, _, _ in field_docs(config)}
    keys = [RENAMED_FIELDS.get(key.strip(), key.strip()) for key in text.split(",") if key.strip()]
    for key in keys:
        if kinds.get(key) != "bool":
            raise ConfigError(f"--switches: {key!r} is not a boolean config field")
    return keys


def main(args: argparse.Namespace) -> int:
    from planet.utils import choose_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.repeats < 1 or args.env_steps < 1:
        raise UsageError("--repeats and --env-steps must be at least 1")
    if args.batch_envs < 2:
        raise UsageError(f"--batch-envs must be at least 2 (the batched planning figure beside "
                         f"the 1-env one), got {args.batch_envs}")
    device = choose_device(args.device)  # --device cuda without a GPU: a one-line error
    config = Config()
    apply_preset(config, args.preset, device=device.type)
    apply_overrides(config, parse_assignments(args.set))
    if args.env:  # the episode figure then counts that task's steps and action repeat
        apply_overrides(config, {"env.name": args.env})
    switches = parse_switches(args.switches, config)
    result = run_bench(config, repeats=args.repeats, env_steps=args.env_steps,
                       batch_envs=args.batch_envs, env_name=args.env, skip_env=args.skip_env,
                       verbose=args.verbose, memory=not args.skip_memory, device=device,
                       switches=switches,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    result["command"] = " ".join(sys.argv)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    checks_ok = result["checks"]["losses"]["ok"] and result["checks"]["planner"]["ok"]
    return 0 if checks_ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m planet.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
