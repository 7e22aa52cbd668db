"""`planet evaluate --seed S` and `planet predict --seed S` give the same numbers every time."""

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
