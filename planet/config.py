"""One typed configuration for a PlaNet run, with the paper's values as defaults.

The tree is `Config(env, model, train, planner, machine)`. The first four hold the paper's
hyperparameters, each field's docstring naming the paper symbol and value; `machine` holds the
switches that change speed and memory but not what is learned. Presets are named overrides
applied left to right (`paper`, `smoke`, `cpu`, ...); `--set section.field=value` on the command
line applies after them. Unknown keys and values of the wrong type are errors that name the
closest valid key; the old names of the machine switches (RENAMED_FIELDS) are read as the new.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import inspect
import json
import math
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EnvConfig:
    """The task and how it is observed."""

    name: str = "cartpole-swingup"
    """Task: `cartpole-swingup`, `dmc:walker-walk`, `gym:Pendulum-v1`, `toy:dot` (planet.envs)."""
    action_repeat: int = 0
    """Env steps per agent step (paper: R = 8 cartpole, 4 reacher/cheetah/cup, 2 finger/walker).
    0 takes the task's value from the paper's table (1 for tasks not in it)."""
    image_size: int = 64
    """Observation height and width in pixels (paper: 64)."""
    symbolic: bool = False
    """Use the low-dimensional state vector instead of pixels."""
    max_episode_steps: int = 1000
    """Env steps per episode before truncation (paper: 1000, i.e. 1000 / R agent steps); an
    env's own shorter limit wins (a Gymnasium env's time limit, toy:dot's 30)."""


@dataclass
class ModelConfig:
    """The world model's sizes: encoder, RSSM, observation and reward models (paper Sec. 3)."""

    embedding_size: int = 1024
    """Encoder output e_t (paper: 1024 for 64x64 images)."""
    belief_size: int = 200
    """Deterministic GRU state h_t (paper: 200)."""
    state_size: int = 30
    """Stochastic state s_t, a diagonal Gaussian (paper: 30)."""
    hidden_size: int = 200
    """Width of the RSSM's dense layers (paper: 200)."""
    reward_hidden_size: int = 100
    """Width of the reward model's two hidden layers (official code: 100; paper text: 200)."""
    min_stddev: float = 0.1
    """Lower bound of the state std: softplus(x) + min_stddev (paper: 0.1)."""
    cnn_depth: int = 32
    """Channels of the first conv layer; later layers double it (paper: 32/64/128/256)."""
    activation: str = "relu"
    """Activation of every hidden layer: relu or elu (paper: relu)."""


@dataclass
class TrainConfig:
    """Algorithm 1: collecting data, fitting the model, the ELBO's weights, evaluation."""

    episodes: int = 1000
    """Total episodes to collect, seed episodes included (paper: about 1000 for Table 1)."""
    seed_episodes: int = 5
    """Episodes of uniform random actions before training (paper: S = 5)."""
    collect_interval: int = 100
    """World-model updates per collected episode (paper: C = 100)."""
    batch_size: int = 50
    """Sequence chunks per update (paper: B = 50)."""
    chunk_length: int = 50
    """Rows per chunk (paper: L = 50)."""
    learning_rate: float = 1e-3
    """Adam learning rate (paper: 1e-3)."""
    adam_eps: float = 1e-4
    """Adam epsilon (paper: 1e-4)."""
    grad_clip_norm: float = 1000.0
    """Gradient norm clip (paper: 1000)."""
    free_nats: float = 3.0
    """Free nats: the summed KL is clamped below at this value (paper: 3)."""
    reward_scale: float = 10.0
    """Weight of the reward log-likelihood (official code: 10; the paper text gives none)."""
    overshooting: bool = False
    """Latent overshooting (paper Sec. 4, Eq. 7). Off in the camera-ready configuration."""
    overshooting_distance: int = 50
    """Overshooting distance D (paper: 50; capped at chunk length - 1). Distance 1 is the
    ordinary KL, so overshooting needs D >= 2 and a chunk of 3 or more rows."""
    overshooting_kl_scale: float = 1.0
    """Weight beta of the multi-step KL terms (paper: beta_d = 1)."""
    bit_depth: int = 5
    """Bits kept per colour channel (paper: 5)."""
    exploration_noise: float = 0.3
    """Std of the Gaussian noise added to the planned action while collecting (paper: 0.3)."""
    test_interval: int = 25
    """Run a noise-free evaluation after every this many collected episodes (0 disables)."""
    test_episodes: int = 1
    """Episodes per noise-free evaluation; they run as one batch of envs."""
    checkpoint_interval: int = 1
    """Write a checkpoint after every this many collected episodes."""
    image_log_interval: int = 25
    """Log a reconstruction image to TensorBoard every this many episodes (0 disables)."""
    max_episodes_in_memory: int = 0
    """Replay episodes kept in RAM (0: all). Older ones stay on disk and are read back when
    sampled (planet.data.replay)."""


@dataclass
class PlannerConfig:
    """The CEM planner in latent space (Algorithm 2)."""

    horizon: int = 12
    """Planning horizon H (paper: 12)."""
    iterations: int = 10
    """CEM iterations I (paper: 10)."""
    candidates: int = 1000
    """Candidate action sequences J per iteration (paper: 1000)."""
    top_candidates: int = 100
    """Candidates K the action distribution is refit to (paper: 100)."""


@dataclass
class MachineConfig:
    """How a run uses the machine: speed, memory and number format, not the model or the data.
    Every switch here may change between a run and its resume; planet/fast_paths.py holds the
    forms that fast_deconv and channels_last select."""

    precision: str = "auto"
    """Matrix-product dtype: auto (bf16 where the hardware runs it fast), bfloat16 or float32.
    Weights, optimiser state and the loss stay float32 in every case."""
    deterministic: bool = False
    """Use deterministic algorithms (slower) so a seed reproduces the same run on CPU."""
    fast_deconv: bool = True
    """Run the decoder's first stride-2 transposed conv as a matmul (its input is 1x1), and the
    second and last forward as sub-pixel convs with the transposed conv's own backward: the same
    function and weights, faster on CPU (`planet bench`)."""
    channels_last: bool = True
    """Channels-last memory layout in the conv nets (faster oneDNN kernels on CPU)."""
    compile_planner: bool = False
    """torch.compile the planner's latent rollout (needs a C++ compiler on CPU; falls back to
    eager with a warning). Measured here, paired in one process: planning call 0.70x the eager
    time at the cpu preset (1 env; 0.75x with 5 envs) and 0.71-0.77x at the paper's sizes, after
    about 20 s of compiling per batch shape (1 env, N eval envs) on first use; Inductor caches
    it on disk. Opt-in; the cpu preset turns it on."""
    reuse_host_memory: bool = True
    """On CPU with glibc, keep freed memory in the process for reuse (malloc thresholds): an
    update allocates and frees tensors of tens to hundreds of MB, and fresh pages from the
    kernel cost page faults. Updates measured 7-15 % faster at the cpu preset (+0.02 GiB peak
    RSS) and 10-30 % at the paper batch (+0.3 to 0.5 GiB). False leaves malloc as it is."""


# Old names of the machine switches, from when they sat in `model` and `train`. Config files,
# checkpoints and `--set` may still use them: each is read as its current name.
RENAMED_FIELDS = {
    "model.fast_deconv": "machine.fast_deconv",
    "model.channels_last": "machine.channels_last",
    "train.precision": "machine.precision",
    "train.deterministic": "machine.deterministic",
    "train.reuse_host_memory": "machine.reuse_host_memory",
    "planner.compile": "machine.compile_planner",
}


def current_names(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config dict with any old field name (RENAMED_FIELDS) replaced by its current one."""
    return {RENAMED_FIELDS.get(key, key): value for key, value in flat.items()}


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    machine: MachineConfig = field(default_factory=MachineConfig)
    seed: int = 0
    """Seed of torch, numpy and the environments."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu or cuda."""
    preset: str = "paper"
    """Presets applied, comma-separated, in order (informational: the CLI records the preset
    it applied, `auto` resolved to paper or cpu; a Config built in Python has the paper's)."""
    preset_reason: str = ""
    """Why the preset was chosen, when `auto` chose it (informational)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        config = cls()
        apply_overrides(config, flatten(data))
        return config

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def hash(self, fields: list[str] | None = None) -> str:
        """Short hash of the listed dotted fields (all fields when None)."""
        flat = flatten(self.to_dict())
        keys = sorted(flat) if fields is None else fields
        text = json.dumps({k: flat[k] for k in keys}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- presets: named overrides, applied left to right -------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's configuration: the dataclass defaults themselves.
    "paper": {},
    # Tiny and fast, same code paths: 3 cartpole episodes in well under 2 minutes on 2 cores.
    "smoke": {
        "train.seed_episodes": 2,
        "train.collect_interval": 5,
        "train.batch_size": 4,
        "train.chunk_length": 10,
        "train.test_interval": 1,
        "train.image_log_interval": 1,
        "planner.horizon": 6,
        "planner.iterations": 2,
        "planner.candidates": 32,
        "planner.top_candidates": 4,
        "model.belief_size": 32,
        "model.state_size": 8,
        "model.hidden_size": 32,
        "model.reward_hidden_size": 32,
        "model.cnn_depth": 8,
        "model.embedding_size": 256,
    },
    # Learning per wall-clock minute on 2 CPU cores (the runs that chose it are in
    # results/tuning/README.md): half-width convs (about 4x fewer conv FLOPs), batch 32 x
    # chunk 32 and 35 updates per episode (about 1/7 of the paper's images per episode), CEM
    # with 100 candidates, 5 iterations, top 10 (1/20 of the planning work; the paper's planner
    # did no better on the same model, and 100 candidates beat 200 on 3 of 3 seeds at 60 min).
    # Widths of the RSSM stay. About 21 s per episode (`planet bench --preset cpu`).
    # The planner's rollout is torch.compile'd (figures: MachineConfig.compile_planner).
    "cpu": {
        "model.cnn_depth": 16,
        "model.embedding_size": 512,
        "train.batch_size": 32,
        "train.chunk_length": 32,
        "train.collect_interval": 35,
        "train.test_interval": 10,
        "train.test_episodes": 5,
        "train.image_log_interval": 10,
        "planner.candidates": 100,
        "planner.iterations": 5,
        "planner.top_candidates": 10,
        "machine.compile_planner": True,
    },
}
# `auto` is not a set of overrides: it stands for `paper` on a CUDA device and `cpu` otherwise.
AUTO_PRESET = "auto"
PRESET_HELP = {
    AUTO_PRESET: "the default: paper when training on a CUDA device, cpu otherwise",
    "paper": "the paper's configuration (the defaults)",
    "smoke": "tiny model and planner, same code paths: a quick check that everything runs",
    "cpu": "smaller convs, batches and CEM: most learning per minute on 2 CPU cores",
}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'batch_size': 50}} -> {'train.batch_size': 50}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@functools.cache
def _docstrings(cls: type) -> dict[str, str]:
    """{field: docstring} of a config dataclass, read once from its source (the string literal
    under each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:] + [None], strict=True):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_docs(config: Config | None = None) -> list[tuple[str, str, Any, str]]:
    """(dotted name, type name, value, doc) of every leaf field of `config` (default: Config())."""
    config = config or Config()
    rows = []

    def walk(obj: Any, prefix: str) -> None:
        docs = _docstrings(type(obj))
        hints = _type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, prefix + f.name + ".")
            else:
                rows.append((prefix + f.name, hints[f.name].__name__, value, docs.get(f.name, "")))

    walk(config, "")
    return rows


class ConfigError(ValueError):
    """A bad key or value in a config override; the message is meant for the user."""


def _parse_value(key: str, text: Any, kind: type) -> Any:
    if not isinstance(text, str):
        if kind is float and isinstance(text, int) and not isinstance(text, bool):
            return float(text)
        if isinstance(text, kind) and not (kind is int and isinstance(text, bool)):
            return text
        raise ConfigError(f"{key} must be {kind.__name__}, got {text!r}")
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {text!r}")
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{key} must be {kind.__name__}, got {text!r}") from None


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Set dotted fields in place, checking that each key exists and each value has its type."""
    valid = {name: kind for name, kind, _, _ in field_docs(config)}
    types = {"int": int, "float": float, "str": str, "bool": bool}
    for key, value in current_names(overrides).items():
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown config field {key!r}{hint}")
        parsed = _parse_value(key, value, types[valid[key]])
        target: Any = config
        *parents, leaf = key.split(".")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, parsed)
    validate(config)
    return config


def resolve_auto_preset(device: str) -> tuple[str, str]:
    """The preset `auto` stands for on `device` (auto, cpu or cuda), and why."""
    if device == "cuda":
        return "paper", "auto: --device cuda, so the paper's configuration"
    if device == "cpu":
        return "cpu", "auto: --device cpu, so the preset tuned for small CPUs"
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return "paper", f"auto: CUDA device found ({name}), so the paper's configuration"
    return "cpu", ("auto: no CUDA device, so the preset tuned for small CPUs "
                   "(--preset paper forces the paper's configuration)")


def apply_preset(config: Config, name: str, device: str | None = None) -> Config:
    """Apply presets left to right. `auto` resolves to `paper` or `cpu` from `device`
    (default: config.device), and config.preset then names the preset actually applied."""
    applied, reasons = [], []
    parts = [part.strip() for part in name.split(",") if part.strip()]
    if not parts:
        raise ConfigError(f"--preset names no preset ({name!r}); valid presets: "
                          f"{', '.join([AUTO_PRESET, *PRESETS])}")
    for part in parts:
        if part == AUTO_PRESET:
            part, reason = resolve_auto_preset(device or config.device)
            reasons.append(reason)
        if part not in PRESETS:
            valid = ", ".join([AUTO_PRESET, *PRESETS])
            raise ConfigError(f"unknown preset {part!r}; valid presets: {valid}")
        apply_overrides(config, PRESETS[part])
        applied.append(part)
    config.preset = ",".join(applied) or name
    config.preset_reason = "; ".join(reasons)
    return config


def parse_assignments(items: list[str]) -> dict[str, str]:
    """['train.batch_size=16'] -> {'train.batch_size': '16'}."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    return overrides


# --- validation: one row of rules per field --------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One condition on a field's value, and how a failure reads: '<field> <says>, got <v>'."""

    holds: Callable[[Any], bool]
    says: str


# Each evaluation during training has this many env seeds (planet.seeds.training_eval_index).
MAX_TEST_EPISODES = 1000

POSITIVE = Rule(lambda value: value > 0, "must be positive")
NON_NEGATIVE = Rule(lambda value: value >= 0, "must be >= 0")


def at_least(low: int) -> Rule:
    return Rule(lambda value: value >= low, f"must be at least {low}")


def at_most(high: int) -> Rule:
    return Rule(lambda value: value <= high, f"must be at most {high}")


def one_of(*choices: str) -> Rule:
    return Rule(lambda value: value in choices, "must be " + ", ".join(choices[:-1])
                + f" or {choices[-1]}")


# Every field has a row (tests/test_config.py checks that no field is missing), so a new field
# needs a decision here. Types are checked on parsing (apply_overrides); every float must also
# be finite. An empty row: any value of the field's type is fine (bools; names that
# planet.envs checks; informational strings).
FIELD_RULES: dict[str, tuple[Rule, ...]] = {
    "env.name": (),
    "env.action_repeat": (NON_NEGATIVE,),
    "env.image_size": (POSITIVE,),  # and 64 for pixels: see _cross_field_problem
    "env.symbolic": (),
    "env.max_episode_steps": (POSITIVE,),
    "model.embedding_size": (POSITIVE,),
    "model.belief_size": (POSITIVE,),
    "model.state_size": (POSITIVE,),
    "model.hidden_size": (POSITIVE,),
    "model.reward_hidden_size": (POSITIVE,),
    "model.min_stddev": (POSITIVE,),
    "model.cnn_depth": (POSITIVE,),
    "model.activation": (one_of("relu", "elu"),),
    "train.episodes": (NON_NEGATIVE,),
    "train.seed_episodes": (NON_NEGATIVE,),
    "train.collect_interval": (NON_NEGATIVE,),
    "train.batch_size": (POSITIVE,),
    "train.chunk_length": (POSITIVE, at_least(2)),
    "train.learning_rate": (POSITIVE,),
    "train.adam_eps": (POSITIVE,),
    "train.grad_clip_norm": (POSITIVE,),
    "train.free_nats": (NON_NEGATIVE,),
    "train.reward_scale": (NON_NEGATIVE,),
    "train.overshooting": (),
    "train.overshooting_distance": (POSITIVE,),
    "train.overshooting_kl_scale": (NON_NEGATIVE,),
    "train.bit_depth": (POSITIVE, at_most(8)),
    "train.exploration_noise": (NON_NEGATIVE,),
    "train.test_interval": (NON_NEGATIVE,),
    "train.test_episodes": (POSITIVE, at_most(MAX_TEST_EPISODES)),
    "train.checkpoint_interval": (POSITIVE,),
    "train.image_log_interval": (NON_NEGATIVE,),
    "train.max_episodes_in_memory": (NON_NEGATIVE,),
    "planner.horizon": (POSITIVE,),
    "planner.iterations": (POSITIVE,),
    "planner.candidates": (POSITIVE,),
    "planner.top_candidates": (POSITIVE,),
    "machine.precision": (one_of("auto", "bfloat16", "float32"),),
    "machine.deterministic": (),
    "machine.fast_deconv": (),
    "machine.channels_last": (),
    "machine.compile_planner": (),
    "machine.reuse_host_memory": (),
    # numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1.
    "seed": (NON_NEGATIVE, at_most(2**32 - 1)),
    "device": (one_of("auto", "cpu", "cuda"),),
    "preset": (),
    "preset_reason": (),
}


def _cross_field_problem(config: Config) -> str | None:
    if config.planner.top_candidates > config.planner.candidates:
        return (f"planner.top_candidates must not exceed planner.candidates, got "
                f"{config.planner.top_candidates} > {config.planner.candidates}")
    if config.train.overshooting and (config.train.overshooting_distance < 2
                                      or config.train.chunk_length < 3):
        return (f"train.overshooting adds KL terms at distances 2 .. D, so it needs "
                f"train.overshooting_distance >= 2 and train.chunk_length >= 3, got "
                f"{config.train.overshooting_distance} and {config.train.chunk_length}")
    if not config.env.symbolic and config.env.image_size != 64:
        return (f"env.image_size must be 64 for pixel observations (the encoder and decoder "
                f"take 64x64 frames), got {config.env.image_size}")
    return None


def validate(config: Config) -> None:
    """Reject values no run can use, with a one-line message that names the field."""
    for key, value in flatten(config.to_dict()).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        for rule in FIELD_RULES[key]:
            if not rule.holds(value):
                raise ConfigError(f"{key} {rule.says}, got {value!r}")
    problem = _cross_field_problem(config)
    if problem:
        raise ConfigError(problem)


def make_config(preset: str = "paper", overrides: dict[str, Any] | None = None) -> Config:
    config = Config()
    apply_preset(config, preset, device=str((overrides or {}).get("device", config.device)))
    apply_overrides(config, overrides or {})
    return config
