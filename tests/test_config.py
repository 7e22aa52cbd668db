import dataclasses
import json

import pytest

from planet.config import (
    FIELD_RULES,
    PRESETS,
    Config,
    ConfigError,
    MachineConfig,
    apply_overrides,
    field_docs,
    make_config,
    parse_assignments,
)


def test_defaults_are_the_papers_numbers():
    config = Config()
    assert config.env.name == "cartpole-swingup"
    assert (config.model.embedding_size, config.model.belief_size, config.model.state_size) == (
        1024, 200, 30,
    )
    assert config.model.min_stddev == 0.1
    assert (config.model.hidden_size, config.model.cnn_depth) == (200, 32)  # 32/64/128/256 convs
    assert config.model.reward_hidden_size == 100  # the camera-ready code's 2 x 100
    assert config.model.activation == "relu"
    assert (config.env.image_size, config.env.max_episode_steps) == (64, 1000)
    assert config.env.action_repeat == 0  # 0: the paper's per-task table
    assert config.train.episodes == 1000
    assert config.train.reward_scale == 10.0  # the official code's reward loss scale
    assert config.train.overshooting_distance == 50
    assert PRESETS["paper"] == {}  # the paper preset is these defaults, unchanged
    assert config.train.free_nats == 3.0
    assert (config.train.batch_size, config.train.chunk_length) == (50, 50)
    assert (config.train.learning_rate, config.train.adam_eps) == (1e-3, 1e-4)
    assert config.train.grad_clip_norm == 1000.0
    assert (config.train.seed_episodes, config.train.collect_interval) == (5, 100)
    assert config.train.exploration_noise == 0.3
    assert config.train.bit_depth == 5
    assert config.train.overshooting is False
    planner = config.planner
    assert (planner.horizon, planner.iterations, planner.candidates, planner.top_candidates) == (
        12, 10, 1000, 100,
    )


def test_every_field_has_a_docstring():
    rows = field_docs()
    undocumented = [name for name, _, _, doc in rows if not doc]
    assert undocumented == []
    assert len(rows) > 30


def test_unknown_key_names_the_closest_one():
    with pytest.raises(ConfigError, match="did you mean train.batch_size"):
        apply_overrides(Config(), {"train.batch_sise": 3})


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="train.batch_size must be int"):
        apply_overrides(Config(), {"train.batch_size": "many"})
    with pytest.raises(ConfigError, match="true or false"):
        apply_overrides(Config(), {"train.overshooting": "maybe"})


def test_values_parse_from_strings():
    config = apply_overrides(
        Config(), parse_assignments(["train.batch_size=16", "train.overshooting=true",
                                     "train.learning_rate=3e-4", "env.name=gym:Pendulum-v1"])
    )
    assert config.train.batch_size == 16
    assert config.train.overshooting is True
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.env.name == "gym:Pendulum-v1"


def test_invalid_values_are_refused():
    with pytest.raises(ConfigError, match="train.episodes must be >= 0"):
        apply_overrides(Config(), {"train.episodes": -1})
    with pytest.raises(ConfigError, match="top_candidates"):
        apply_overrides(Config(), {"planner.top_candidates": 2000})


def test_every_field_has_a_row_of_rules():
    assert sorted(FIELD_RULES) == sorted(name for name, _, _, _ in field_docs())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.learning_rate", "nan", "train.learning_rate must be a finite number, got nan"),
        ("train.learning_rate", "0", "train.learning_rate must be positive, got 0.0"),
        ("train.adam_eps", "-1e-4", "train.adam_eps must be positive"),
        ("train.grad_clip_norm", "inf", "train.grad_clip_norm must be a finite number, got inf"),
        ("train.free_nats", "-inf", "train.free_nats must be a finite number, got -inf"),
        ("train.reward_scale", "-1", "train.reward_scale must be >= 0, got -1.0"),
        ("train.exploration_noise", "-0.3", "train.exploration_noise must be >= 0"),
        ("train.overshooting_distance", "0", "train.overshooting_distance must be positive"),
        ("train.bit_depth", "9", "train.bit_depth must be at most 8, got 9"),
        # More would give two evaluations the same env seeds (seeds.training_eval_index).
        ("train.test_episodes", "1001", "train.test_episodes must be at most 1000, got 1001"),
        ("train.max_episodes_in_memory", "-1", "train.max_episodes_in_memory must be >= 0"),
        ("train.chunk_length", "1", "train.chunk_length must be at least 2, got 1"),
        ("model.min_stddev", "0", "model.min_stddev must be positive, got 0.0"),
        ("model.min_stddev", "-5", "model.min_stddev must be positive, got -5.0"),
        ("model.activation", "tanh", "model.activation must be relu or elu, got 'tanh'"),
        ("env.image_size", "32", "env.image_size must be 64 for pixel observations"),
        ("env.image_size", "-64", "env.image_size must be positive"),
        ("seed", "-1", "seed must be >= 0, got -1"),
        ("seed", str(2**32), "seed must be at most 4294967295"),
        ("device", "tpu", "device must be auto, cpu or cuda, got 'tpu'"),
    ],
)
def test_out_of_range_values_are_refused(key, value, message):
    with pytest.raises(ConfigError) as refused:
        apply_overrides(Config(), {key: value})
    assert message in str(refused.value)


def test_overshooting_needs_a_distance_and_a_chunk_it_can_use():
    # Distance 1 is the ordinary KL: overshooting on with D = 1 (or chunks of 2 rows) would
    # train exactly as without it while the user believes it is on.
    for overrides in ({"train.overshooting_distance": "1"}, {"train.chunk_length": "2"}):
        with pytest.raises(ConfigError, match="needs train.overshooting_distance >= 2 and "
                                              "train.chunk_length >= 3"):
            apply_overrides(Config(), {"train.overshooting": "true", **overrides})
    assert apply_overrides(Config(), {"train.overshooting_distance": "1"}).train.overshooting \
        is False  # a distance alone, with overshooting off, is fine


def test_image_size_is_free_for_state_observations():
    config = apply_overrides(Config(), {"env.symbolic": "true", "env.image_size": "32"})
    assert config.env.image_size == 32


def test_a_saved_config_with_a_bad_value_is_refused(tmp_path):
    path = tmp_path / "config.json"
    data = Config().to_dict()
    data["model"]["min_stddev"] = -5.0
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="model.min_stddev must be positive"):
        Config.load(path)


def test_presets_stack_left_to_right():
    config = make_config("smoke")
    for key, value in PRESETS["smoke"].items():
        section, name = key.split(".")
        assert getattr(getattr(config, section), name) == value
    # Both set train.batch_size (cpu 32, smoke 4): the preset on the right wins.
    assert make_config("smoke,cpu").train.batch_size == PRESETS["cpu"]["train.batch_size"] == 32
    assert make_config("cpu,smoke").train.batch_size == PRESETS["smoke"]["train.batch_size"] == 4
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        make_config("nope")


def test_auto_preset_is_paper_on_cuda_and_cpu_otherwise(monkeypatch):
    import torch

    on_cpu = make_config("auto", {"device": "cpu"})
    assert on_cpu.preset == "cpu" and on_cpu.model.cnn_depth == PRESETS["cpu"]["model.cnn_depth"]
    assert "--device cpu" in on_cpu.preset_reason
    on_cuda = make_config("auto", {"device": "cuda"})
    assert on_cuda.preset == "paper" and on_cuda.train.batch_size == 50
    assert on_cuda.model.cnn_depth == 32 and "--device cuda" in on_cuda.preset_reason

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    found = make_config("auto")
    assert (found.preset, found.train.batch_size) == ("cpu", PRESETS["cpu"]["train.batch_size"])
    assert found.preset_reason.startswith("auto: no CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")
    found = make_config("auto")
    assert (found.preset, found.train.batch_size) == ("paper", 50)
    assert found.preset_reason == "auto: CUDA device found (Fake GPU), so the paper's configuration"
    # Presets named after auto still apply on top of what it chose.
    assert make_config("auto,smoke", {"device": "cpu"}).preset == "cpu,smoke"
    assert make_config("paper").preset_reason == ""


def test_json_round_trip(tmp_path):
    config = make_config("smoke", {"seed": 7, "train.overshooting": True})
    config.save(tmp_path / "config.json")
    loaded = Config.load(tmp_path / "config.json")
    assert loaded == config
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 7


def test_machine_switches_are_read_under_their_old_names(tmp_path):
    """Config files, checkpoints and --set written when the machine switches lived in the
    model/train/planner sections still mean the same switches."""
    old = Config().to_dict()
    for section, name in [("model", "fast_deconv"), ("model", "channels_last"),
                          ("train", "precision"), ("train", "deterministic"),
                          ("train", "reuse_host_memory")]:
        old[section][name] = old["machine"][name]
    old["planner"]["compile"] = old["machine"].pop("compile_planner")
    del old["machine"]
    old["model"]["fast_deconv"] = False
    old["train"]["precision"] = "float32"
    old["planner"]["compile"] = True
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    config = Config.load(path)
    assert config.machine.fast_deconv is False
    assert config.machine.precision == "float32"
    assert config.machine.compile_planner is True
    assert config.machine.channels_last is True
    assert "fast_deconv" not in config.to_dict()["model"]
    assert make_config("paper", {"planner.compile": "true"}).machine.compile_planner is True
    with pytest.raises(ConfigError, match="machine.precision must be auto, bfloat16 or float32"):
        make_config("paper", {"train.precision": "fp8"})


def test_machine_switches_may_change_on_resume():
    """machine.* changes speed and memory only: a resume may change any of them, and the model
    sections hold none of them."""
    from planet.resume import RESUMABLE_FIELDS, check_resume_config

    machine = [name for name, *_ in field_docs() if name.startswith("machine.")]
    assert machine and set(machine) <= RESUMABLE_FIELDS
    assert len(machine) == len(dataclasses.fields(MachineConfig))  # each switch documented
    saved = make_config("cpu")
    requested = make_config("cpu", {"machine.fast_deconv": "false",
                                    "machine.compile_planner": "false",
                                    "machine.precision": "float32"})
    changed = check_resume_config(saved, requested)
    assert len(changed) == 3 and all(text.startswith("machine.") for text in changed)


def test_no_two_training_evaluations_share_an_env_seed():
    from planet.config import MAX_TEST_EPISODES
    from planet.seeds import training_eval_index

    indices = [training_eval_index(episode, i)
               for episode in range(50) for i in range(MAX_TEST_EPISODES)]
    assert len(set(indices)) == len(indices)
    assert training_eval_index(3, 4) == 3004  # the scheme runs were written with
