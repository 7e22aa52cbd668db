import json

import pytest

from planet.config import (
    PRESETS,
    Config,
    ConfigError,
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


def test_presets_stack_left_to_right():
    config = make_config("smoke")
    for key, value in PRESETS["smoke"].items():
        section, name = key.split(".")
        assert getattr(getattr(config, section), name) == value
    assert make_config("smoke,paper").train.batch_size == PRESETS["smoke"]["train.batch_size"]
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
