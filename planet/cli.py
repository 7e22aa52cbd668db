"""The `planet` command: train, presets, evaluate, predict, plot, watch, bench, bench-learning,
sweep, report.

`train` and `presets` live here; the other subcommands live in their own modules (EXTRA_COMMANDS).

Every config field can be set with `--set section.field=value`; `planet train --help` lists them
all with their defaults. Errors are one line on stderr and a non-zero exit (`--debug` shows the
traceback).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from planet.config import (
    AUTO_PRESET,
    PRESET_HELP,
    PRESETS,
    Config,
    apply_overrides,
    apply_preset,
    field_docs,
    parse_assignments,
)
from planet.errors import UsageError


def _fields_epilog() -> str:
    lines = ["config fields (set any with --set section.field=value):"]
    config, section = Config(), None
    for name, kind, default, doc in field_docs(config):
        head = name.split(".")[0] if "." in name else ""
        if head != section:
            section = head
            about = (" ".join((type(getattr(config, head)).__doc__ or "").split()) if head
                     else "the run's seed and device, and the presets applied")
            lines.append(f" {head or 'top level'}: {about}")
        lines.append(f"  {name} ({kind}, default {default!r})")
        if doc:
            lines.append(f"      {doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="planet",
        description="PlaNet: learning latent dynamics for planning from pixels (Hafner et al.).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train an agent (resumes when the run dir holds a checkpoint)",
        description="Train PlaNet. The default preset, auto, is the paper's configuration on a "
        "CUDA device and the cpu preset otherwise.",
        epilog=_fields_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--env", help="task, e.g. cartpole-swingup, dmc:walker-walk, "
                       "gym:Pendulum-v1, toy:dot (default: cartpole-swingup)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--run-dir", help="run folder (default runs/<env>/<preset>-s<seed>)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="resume the run in RUN_DIR with its saved config")
    train.add_argument("--episodes", type=int,
                       help="total episodes to collect, seed episodes included (default 1000)")
    train.add_argument("--preset", default=None,
                       help=f"named overrides, comma-separated: {AUTO_PRESET}, "
                       f"{', '.join(PRESETS)} (default auto: paper on a CUDA device, else cpu)")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    train.add_argument("--symbolic", action="store_true",
                       help="low-dimensional state observations instead of pixels")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set train.batch_size=16")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    commands.add_parser("presets", help="list the presets and what they change")
    for name, (module_name, summary) in EXTRA_COMMANDS.items():
        module = _extra_module(module_name)
        if module is None:
            continue
        sub = commands.add_parser(
            name, help=summary, description=module.__doc__.strip().splitlines()[0],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
    return parser


# Subcommands that live in their own module: each defines add_arguments(parser) and
# main(args) -> exit code. Modules are imported only to build the parser and to run.
EXTRA_COMMANDS = {
    "evaluate": ("planet.evaluate", "run noise-free episodes, report returns, write a video"),
    "predict": ("planet.predict", "open-loop video prediction of the world model"),
    "plot": ("planet.plot", "plot return versus env steps for one or more runs"),
    "watch": ("planet.watch", "live window of the agent acting, beside its reconstruction"),
    "bench": ("planet.bench", "time the update, planner and env step: reference vs fast path"),
    "bench-learning": ("planet.learning_bench", "train for a wall-clock budget, evaluate at "
                       "fixed times, write learning.json and a curve"),
    "sweep": ("planet.sweep", "train a grid of tasks x seeds x config values on Ray, resumable"),
    "report": ("planet.report", "table and figure of a sweep against the published returns"),
}


def _extra_module(module_name: str):
    import importlib
    import importlib.util

    if importlib.util.find_spec(module_name) is None:
        return None
    return importlib.import_module(module_name)


def resolve_train_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """Config from (saved config when resuming) + preset + flags + --set, and the run dir."""
    if args.resume:
        run_dir = Path(args.resume)
        if args.run_dir and Path(args.run_dir).resolve() != run_dir.resolve():
            raise UsageError(f"--resume {run_dir} continues that run in its own folder; "
                             f"--run-dir {args.run_dir} names another: give one of them")
        if not (run_dir / "config.json").exists():
            raise UsageError(f"--resume {run_dir}: no config.json there, nothing to resume")
        from planet.run_files import load_run_config

        config = load_run_config(run_dir)  # a damaged config.json is a one-line error
    else:
        config = Config()
    overrides = {}
    if args.env is not None:
        overrides["env.name"] = args.env
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.episodes is not None:
        if args.episodes < 0:
            raise UsageError(f"--episodes must be >= 0, got {args.episodes}")
        overrides["train.episodes"] = args.episodes
    if args.device is not None:
        overrides["device"] = args.device
    if args.symbolic:
        overrides["env.symbolic"] = True
    overrides.update(parse_assignments(args.set))
    preset = args.preset if args.preset is not None else (None if args.resume else AUTO_PRESET)
    if preset is not None:  # presets first, then flags and --set on top of them
        apply_preset(config, preset, device=str(overrides.get("device", config.device)))
    apply_overrides(config, overrides)
    if args.resume:
        return config, run_dir
    return config, Path(args.run_dir) if args.run_dir else default_run_dir(config)


def default_run_dir(config: Config) -> Path:
    """runs/<env>/<preset>-s<seed>, with a tag when the config differs from its preset in a
    field that changes the model or the data (`symbolic`, else a short hash of the fields), so
    two such configurations never share a default folder (resume would refuse the second)."""
    from planet.config import flatten
    from planet.resume import RESUMABLE_FIELDS
    from planet.tasks import env_folder_name

    preset = config.preset.replace(",", "+")
    base = Config()
    apply_preset(base, config.preset, device=config.device)
    apply_overrides(base, {"env.name": config.env.name, "seed": config.seed})
    ours, theirs = flatten(config.to_dict()), flatten(base.to_dict())
    changed = {key: value for key, value in sorted(ours.items())
               if key not in RESUMABLE_FIELDS and theirs.get(key) != value}
    if changed == {"env.symbolic": True}:
        preset += "-symbolic"
    elif changed:
        preset += "-" + hashlib.sha256(repr(changed).encode()).hexdigest()[:6]
    return Path("runs") / env_folder_name(config.env.name) / f"{preset}-s{config.seed}"


def command_train(args: argparse.Namespace) -> int:
    from planet.tasks import parse_env_name

    config, run_dir = resolve_train_config(args)
    parse_env_name(config.env.name)  # fail fast on a bad name, before any heavy import
    from planet.train import train  # torch, gymnasium

    try:
        summary = train(config, run_dir, progress=not args.no_progress)
    except KeyboardInterrupt:
        from planet.checkpoint import last_checkpoint_line

        return interrupted(f"planet train: interrupted; {last_checkpoint_line(run_dir)}. "
                           f"Continue with: planet train --resume {run_dir}")
    last = summary["last"]
    if last:
        print(
            f"done: {summary['episodes']} episodes, {summary['env_steps']} env steps, "
            f"last return {last['return']:.1f}; run dir {run_dir}"
        )
    print(f"next: planet evaluate {run_dir} --episodes 10 --video agent.mp4\n"
          f"      planet predict {run_dir}\n"
          f"      planet plot {run_dir} --out curve.png\n"
          f"      tensorboard --logdir {run_dir / 'tb'}")
    return 0


def command_presets(args: argparse.Namespace) -> int:
    print(f"{AUTO_PRESET}: {PRESET_HELP[AUTO_PRESET]}")
    for name, overrides in PRESETS.items():
        print(f"{name}: {PRESET_HELP.get(name, '')}")
        for key, value in overrides.items():
            print(f"    {key} = {value!r}")
    return 0


COMMANDS = {"train": command_train, "presets": command_presets}


def interrupted(message: str) -> int:
    """Ctrl-C's answer: `message` on stderr, exit status 130. What the interrupt cut off half
    built (dm_control's rendering context, made while an env is) fails in its __del__ when it is
    freed, and Python would print that as "Exception ignored in ..." with a traceback; the
    process only exits from here on, so those reports are dropped."""
    sys.unraisablehook = lambda unraisable: None
    print(message, file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    """Run `planet ARGV`; returns the exit status (2: bad input, 130: Ctrl-C)."""
    try:
        return _parse_and_run(argv)
    except KeyboardInterrupt:
        # Ctrl-C before the command started: building the parser and importing the error
        # types imports torch, which takes a second or more.
        return interrupted("planet: interrupted")


def _parse_and_run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: sweep.json records it
    if args.command is None:
        parser.print_help()
        return 2
    from planet.user_errors import USER_ERRORS

    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        return _extra_module(EXTRA_COMMANDS[args.command][0]).main(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"planet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # train and sweep say where their runs stand themselves; the other commands only read
        # a run (or write their own outputs), so there is nothing to keep or resume.
        return interrupted(f"planet {args.command}: interrupted")
    except OSError as error:
        if args.debug:
            raise
        where = f": {error.filename}" if error.filename else ""
        print(f"planet {args.command}: error: {error.strerror or error}{where}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
