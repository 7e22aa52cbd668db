"""Time the world-model update, the planner and the env step: reference path vs fast path.

Everything runs in one process, the two paths interleaved (ref, fast, ref, fast, ...), so that
a noisy, shared machine slows both alike; the table gives medians and the ratio fast / ref.

    reference   float32, eager, NCHW, nn.ConvTranspose2d as written; env renders every physics
                step at 320x240 and resizes (what a straightforward port does)
    fast        what `planet train` uses by default: bf16 autocast where the hardware is fast
                at it (float32 weights and loss), channels-last, the decoder's transposed convs
                as a matmul and sub-pixel convs (models.decoders), the batched planner (its
                rollout torch.compile'd where planner.compile is on: the cpu preset); one 64x64
                render per step; glibc malloc keeping freed memory for reuse (process-wide,
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
    planet bench --set planner.compile=true      # the paper configuration, compiled planner
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet.config import Config, apply_overrides, apply_preset, parse_assignments

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
    "train.precision": "float32",
    "model.fast_deconv": False,
    "model.channels_last": False,
    "train.reuse_host_memory": False,
    "planner.compile": False,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="paper", help="config preset(s), comma-separated")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set planner.candidates=500")
    parser.add_argument("--env", help="task to time the env step on (default: the config's)")
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
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="print every timed call")


# --- helpers -------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux VmHWM; else ru_maxrss).

    VmHWM belongs to the address space, which exec replaces. ru_maxrss does not: Linux carries
    it over fork and exec, so a child started by a big parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Samples the process RSS every 5 ms in a thread while active: `with peak: ...`."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self):
        self.peak = max(self.peak, _rss_bytes())
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def interleaved(
    functions: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
    monitors: dict[str, PeakRSS] | None = None, log: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Run each function warmup + repeats times, alternating between them; wall times (s)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(warmup + repeats):
        for name, function in functions.items():
            monitor = monitors.get(name) if monitors else None
            start = time.perf_counter()
            if monitor is not None:
                with monitor:
                    function()
            else:
                function()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
            if log is not None:
                log(f"  {name} {'warm-up' if round_index < warmup else 'run'} {elapsed:.4f} s")
    return times


def count_flops(function: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions (forward and backward) of one call."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        function()
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, size: int = 1536, repeats: int = 5) -> float:
    """Best FLOP/s of a square matmul in `dtype` over a few tries (the machine's peak)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def system_info(dtype: torch.dtype) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from planet.utils import cpu_has_fast_bf16

    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fast_dtype": str(dtype).replace("torch.", ""),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "load_average": os.getloadavg(),
    }


# --- the two paths -------------------------------------------------------------------------
class Path_:
    """One path (reference or fast): model, learner, planners and agent from one config."""

    def __init__(self, config: Config, action_size: int, device: torch.device,
                 state_dict: dict | None, log: Callable[[str], None] | None = None):
        from planet.agent import Agent
        from planet.learner import Learner
        from planet.models.world_model import WorldModel
        from planet.planner import CEMPlanner
        from planet.utils import autocast_factory, resolve_precision

        self.config = config
        self.dtype = resolve_precision(config.train.precision, device)
        self.autocast = autocast_factory(device, self.dtype)
        self.model = WorldModel(config.model, action_size, (3, 64, 64)).to(device)
        if state_dict is not None:
            self.model.load_state_dict(state_dict)
        self.learner = Learner(self.model, config.train, device, self.autocast)
        self.planner = CEMPlanner(
            self.model.rssm, self.model.reward_model, action_size, config.planner, self.autocast,
            log,
        )
        self.agent = Agent(self.model, config, device, self.autocast, log)


def _fill_replay(config: Config, action_size: int, seed: int):
    from planet.data.replay import EpisodeReplay

    rng = np.random.default_rng(seed)
    replay = EpisodeReplay(bit_depth=config.train.bit_depth)
    steps = max(config.train.chunk_length, config.env.max_episode_steps // _repeat(config))
    for _ in range(5):
        replay.add({
            "obs": rng.integers(0, 256, (steps + 1, 3, 64, 64), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (steps + 1, action_size)).astype(np.float32),
            "reward": rng.uniform(0, 1, steps + 1).astype(np.float32),
        })
    return replay


def _repeat(config: Config) -> int:
    from planet.envs import default_action_repeat

    return config.env.action_repeat or default_action_repeat(config.env.name)


def loss_check(ref: Path_, fast: Path_, chunks, seed: int) -> dict[str, Any]:
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


def planner_check(ref: Path_, fast: Path_, belief, state, seed: int) -> dict[str, Any]:
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

    code = (
        "import json, sys, numpy as np, torch\n"
        "from planet.bench import Path_, _fill_replay, peak_rss\n"
        "from planet.config import Config\n"
        "config = Config.from_dict(json.loads(sys.argv[1]))\n"
        "if config.train.reuse_host_memory:\n"
        "    from planet.utils import reuse_freed_host_memory\n"
        "    reuse_freed_host_memory()\n"
        "path = Path_(config, 1, torch.device('cpu'), None)\n"
        "replay = _fill_replay(config, 1, 0)\n"
        "rng = np.random.default_rng(0)\n"
        "for _ in range(int(sys.argv[2])):\n"
        "    path.learner.update(replay.sample(config.train.batch_size,\n"
        "                                      config.train.chunk_length, rng))\n"
        "print(peak_rss())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, config.to_json(), str(updates)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


# --- the env step --------------------------------------------------------------------------
def _env_figures(config: Config, env_name: str, steps: int, seed: int) -> dict[str, Any]:
    """Median seconds per agent step: one 64x64 render (fast) vs a render per physics step."""
    from planet.envs import make_env, parse_env_name

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


# --- main ----------------------------------------------------------------------------------
def run_bench(config: Config, repeats: int = 5, env_steps: int = 20, batch_envs: int = 5,
              env_name: str | None = None, skip_env: bool = False, seed: int = 0,
              log: Callable[[str], None] = print, verbose: bool = False,
              memory: bool = True) -> dict[str, Any]:
    """All figures as a dict (the JSON that --json writes)."""
    device = torch.device("cpu")
    ref_config = copy.deepcopy(config)
    apply_overrides(ref_config, REFERENCE_OVERRIDES)
    if config.train.reuse_host_memory:
        # Process-wide, so the reference path's timings here get it too; only the peak-RSS
        # figure, measured in child processes, shows each path with its own setting.
        from planet.utils import reuse_freed_host_memory

        reuse_freed_host_memory()
    action_size = 1  # cartpole's; the figures hardly depend on it
    torch.manual_seed(seed)
    ref = Path_(ref_config, action_size, device, None)
    fast = Path_(config, action_size, device, ref.model.state_dict(), log)
    info = system_info(fast.dtype)
    log(f"cpu: {info['cpu']} ({info['cpu_count']} cores), threads {info['threads']}, "
        f"torch {info['torch']}, fast dtype {info['fast_dtype']}, load {info['load_average']}")

    replay = _fill_replay(config, action_size, seed)
    rng = np.random.default_rng(seed)
    batch, length = config.train.batch_size, config.train.chunk_length
    checks = {"losses": loss_check(ref, fast, replay.sample(batch, length, rng), seed)}

    # Planner inputs: posterior belief and state after filtering a few random frames.
    with torch.no_grad():
        chunks = replay.sample(batch_envs, 4, rng)
        obs, action, _ = ref.learner.to_device(chunks)
        belief, state = ref.model.rssm.initial(batch_envs)
        embedding = ref.model.encoder(obs)
        out = ref.model.rssm.observe(embedding, action, belief, state)
        belief, state = out.beliefs[-1], out.states[-1]  # (B, ·)
    checks["planner"] = planner_check(ref, fast, belief[:1], state[:1], seed)

    # The peak is measured again before every figure and the best kept: on a shared machine one
    # measurement can catch a moment when a core is busy elsewhere and come out ~2x low.
    peaks = {"reference": 0.0, "fast": 0.0}

    def measure_peaks() -> None:
        peaks["reference"] = max(peaks["reference"], float(matmul_peak(torch.float32)))
        peaks["fast"] = max(peaks["fast"], float(matmul_peak(fast.dtype)))

    measure_peaks()

    figures: dict[str, dict[str, Any]] = {}
    paths = {"reference": ref, "fast": fast}

    def update_fn(path):
        return lambda: path.learner.update(replay.sample(batch, length, rng))

    def plan_fn(path, envs):
        return lambda: path.planner(belief[:envs], state[:envs])

    frame = replay.sample(1, 1, rng).obs[0]  # (1, 3, 64, 64) uint8

    def act_fn(path):
        def act():
            path.agent.reset(1)
            path.agent.act(frame, explore=True)
        return act

    def flops_of_update(path):
        def step():
            obs, action, reward = path.learner.to_device(replay.sample(batch, length, rng))
            path.learner.compute_losses(obs, action, reward).total.backward()
            path.model.zero_grad(set_to_none=True)
        return count_flops(step)

    monitors = {name: PeakRSS() for name in paths}
    specs = [
        ("update", "world-model update (sample, fwd, bwd, Adam)",
         {n: update_fn(p) for n, p in paths.items()}, flops_of_update(ref), monitors),
        ("plan_1", "planning call, 1 env",
         {n: plan_fn(p, 1) for n, p in paths.items()}, count_flops(plan_fn(ref, 1)), None),
        (f"plan_{batch_envs}", f"planning call, {batch_envs} envs",
         {n: plan_fn(p, batch_envs) for n, p in paths.items()},
         count_flops(plan_fn(ref, batch_envs)), None),
        ("act", "agent act (encode, filter, plan), 1 env",
         {n: act_fn(p) for n, p in paths.items()}, None, None),
    ]
    for key, label, functions, flops, monitor in specs:
        measure_peaks()
        log(f"timing {label} ...")
        times = interleaved(functions, repeats, monitors=monitor, log=log if verbose else None)
        figure: dict[str, Any] = {"label": label, "samples": times}
        for name in paths:
            figure[name] = statistics.median(times[name])
        figure["ratio"] = figure["fast"] / figure["reference"]
        if flops:
            figure["flops"] = flops
            for name in paths:
                figure[f"{name}_flops_per_s"] = flops / figure[name]
        figures[key] = figure
    for figure in figures.values():  # floors from the best peak seen
        if "flops" in figure:
            for name in paths:
                figure[f"{name}_floor"] = figure["flops"] / peaks[name]
    log(f"matmul peak (best of {len(specs) + 1} measurements): float32 "
        f"{peaks['reference'] / 1e9:.0f} GFLOP/s, {info['fast_dtype']} "
        f"{peaks['fast'] / 1e9:.0f} GFLOP/s")
    memory_probe = memory
    memory = {name: monitors[name].peak for name in paths}
    memory["process_max_rss"] = peak_rss()
    if memory_probe:
        log("measuring training peak RSS in child processes ...")
        memory["training_reference"] = training_peak_rss(ref_config)
        memory["training_fast"] = training_peak_rss(config)

    if not skip_env:
        log("timing env step ...")
        env_figure = _env_figures(config, env_name or config.env.name, env_steps, seed)
        env_figure["label"] = f"env step with render (repeat {env_figure['action_repeat']})"
        if "reference" in env_figure:
            env_figure["ratio"] = env_figure["fast"] / env_figure["reference"]
        figures["env_step"] = env_figure

    # Whole episode (Alg. 1): C updates plus one collected episode of planned, rendered steps.
    steps = config.env.max_episode_steps // _repeat(config)
    episode = {"label": f"episode: {config.train.collect_interval} updates + {steps} steps"}
    for name in paths:
        env_time = figures.get("env_step", {}).get(name, figures.get("env_step", {}).get("fast"))
        episode[name] = (
            config.train.collect_interval * figures["update"][name]
            + steps * (figures["act"][name] + (env_time or 0.0))
        )
    episode["ratio"] = episode["fast"] / episode["reference"]
    figures["episode"] = episode
    return {
        "system": info,
        "config": config.to_dict(),
        "reference_overrides": REFERENCE_OVERRIDES,
        "repeats": repeats,
        "matmul_peak_flops_per_s": peaks,
        "figures": figures,
        "peak_rss_bytes": memory,
        "checks": checks,
    }


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
    lines.append(f"RSS in this process during updates (both paths loaded): reference "
                 f"{memory['reference'] / 2**30:.2f} GiB, fast {memory['fast'] / 2**30:.2f} GiB")
    losses = result["checks"]["losses"]
    terms = ", ".join(f"{k} {v['reference']:.3f}/{v['fast']:.3f}"
                      for k, v in losses["losses"].items())
    lines.append(f"loss check (ref/fast, rtol {losses['loss_rtol']}, kl atol "
                 f"{losses['kl_atol']}): {terms}; grad cosine {losses['grad_cosine']:.4f}: "
                 f"{'ok' if losses['ok'] else 'FAILED'}")
    planner = result["checks"]["planner"]
    lines.append(f"planner check: first actions differ by {planner['max_abs_diff']:.3f} "
                 f"(atol {planner['atol']}): {'ok' if planner['ok'] else 'FAILED'}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = Config()
    apply_preset(config, args.preset)
    apply_overrides(config, parse_assignments(args.set))
    result = run_bench(config, repeats=args.repeats, env_steps=args.env_steps,
                       batch_envs=args.batch_envs, env_name=args.env, skip_env=args.skip_env,
                       verbose=args.verbose, memory=not args.skip_memory,
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
