"""`planet evaluate --seed S` and `planet predict --seed S` give the same numbers every time, and
training does not depend on how often it evaluates or logs images."""

from __future__ import annotations

import json

import pytest

from planet import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def run_repeatedly(argv: list[str], out_option: str, tmp_path, summary_name: str,
              times: int = 2) -> list[dict]:
    summaries = []
    for attempt in range(times):
        out = tmp_path / f"{attempt}{summary_name}"
        assert cli.main([*argv, out_option, str(out)]) == 0
        summaries.append(json.loads(out.with_suffix(".json").read_text()))
    return summaries


def test_evaluate_with_a_seed_gives_the_same_returns(tiny_run, tmp_path, capsys):
    first, second = run_repeatedly(["evaluate", str(tiny_run), "--episodes", "2", "--seed", "7",
                               "--max-episode-steps", "10"], "--json", tmp_path, "eval.json")
    assert first["returns"] == second["returns"]
    assert len(first["returns"]) == 2
    # And the seed is used: another seed gives other env seeds and other returns.
    (other,) = run_repeatedly(["evaluate", str(tiny_run), "--episodes", "2", "--seed", "8",
                          "--max-episode-steps", "10"], "--json", tmp_path / "s8", "eval.json",
                         times=1)
    assert other["env_seeds"] != first["env_seeds"] and other["returns"] != first["returns"]


def test_predict_with_a_seed_gives_the_same_errors(tiny_run, tmp_path, capsys):
    first, second = run_repeatedly(["predict", str(tiny_run), "--context", "3", "--horizon", "5",
                               "--seed", "7"], "--out", tmp_path, "predict.gif")
    assert first["mse"] == second["mse"] and len(first["mse"]) == 5
    (other,) = run_repeatedly(["predict", str(tiny_run), "--context", "3", "--horizon", "5",
                          "--seed", "8"], "--out", tmp_path / "s8", "predict.gif", times=1)
    assert other["mse"] != first["mse"]  # the seed drives the prior's samples


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_negative_seed_is_one_line(tiny_run, capsys, command):
    assert cli.main([command, str(tiny_run), "--seed", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"planet {command}: error: --seed must be in 0 .. 2**32 - 1, got -1"]


def test_evaluations_and_images_do_not_change_training(tmp_path):
    """What lets a resume change train.test_interval and image_log_interval: evaluating and
    logging images draw from their own random streams, so the collected episodes, the losses
    and the weights are the same with them as without."""
    import torch
    from conftest import TINY_OVERRIDES, train_on_one_thread

    from planet.checkpoint import load_checkpoint
    from planet.config import make_config
    from planet.logging import read_metrics

    runs = {}
    for name, interval in (("quiet", 0), ("busy", 1)):
        config = make_config("smoke", {**TINY_OVERRIDES, "train.episodes": 4,
                                       "train.test_interval": interval,
                                       "train.image_log_interval": interval})
        train_on_one_thread(config, tmp_path / name)
        runs[name] = read_metrics(tmp_path / name)

    def training_fields(record: dict) -> dict:
        return {key: value for key, value in record.items()
                if not key.startswith(("eval_", "time_")) and key != "wall_time"}

    assert any("eval_return" in record for record in runs["busy"])  # it did evaluate
    assert [training_fields(r) for r in runs["busy"]] == [training_fields(r)
                                                          for r in runs["quiet"]]
    weights = [load_checkpoint(tmp_path / name / "checkpoints" / "episode_000004.pt")["model"]
               for name in ("quiet", "busy")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
