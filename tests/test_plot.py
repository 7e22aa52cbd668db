"""`planet plot`: a PNG of the requested size from two runs, and its error cases."""

from __future__ import annotations

import json
import shutil

import imageio.v2 as imageio
from test_evaluate import assert_one_line_error, run_cli

from planet.references import TASKS, planet_returns
from planet.tasks import task_of


def test_plot_two_runs(smoke_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(smoke_run, other, ignore=shutil.ignore_patterns("checkpoints", "episodes"))
    out = tmp_path / "curve.png"
    code, _, err = run_cli(capsys, "plot", smoke_run, other, "--out", out)
    assert code == 0, err
    assert imageio.imread(out).shape[:2] == (600, 1000)
    from planet.plot import draw_runs, load_curves, run_labels

    names = run_labels([smoke_run, other])
    fig = draw_runs([load_curves(smoke_run, names[0]), load_curves(other, names[1])], 1000, 600)
    try:  # a train and an eval curve for each run
        labels = fig.axes[0].get_legend_handles_labels()[1]
        for name in names:
            assert f"{name}: train episodes" in labels, labels
            assert f"{name}: eval (no noise)" in labels, labels
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    code, _, err = run_cli(capsys, "plot", smoke_run, "--out", out, "--width", 640,
                           "--height", 480)
    assert code == 0, err
    assert imageio.imread(out).shape[:2] == (480, 640)


def drawn(curves: dict) -> tuple[tuple[float, float], list[str]]:
    """The step axis's limits and the legend's labels of `planet plot`'s figure for one run."""
    import matplotlib.pyplot as plt

    from planet.plot import draw_runs

    fig = draw_runs([curves], 1000, 600)
    try:
        ax = fig.axes[0]
        return ax.get_xlim(), ax.get_legend_handles_labels()[1]
    finally:
        plt.close(fig)


def test_step_axis_ends_past_the_runs_and_the_markers_they_reach(smoke_run):
    from planet.plot import load_curves
    from planet.references import reference_steps_shown

    assert reference_steps_shown(20_000) == []
    assert reference_steps_shown(60_000) == [100_000]  # half of 100k reached
    assert reference_steps_shown(100_000) == [100_000]  # 500k is 5x away: not drawn
    assert reference_steps_shown(250_000) == [100_000, 500_000]
    curves = load_curves(smoke_run, "smoke")  # 3 episodes of cartpole: 3000 env steps, no marker
    limits, labels = drawn(curves)
    assert limits == (0, 3000 * 1.04)
    assert "cartpole-swingup: PlaNet paper, Table 1 (1M steps): 821" in labels
    assert not any("PlaNet at" in label for label in labels)
    limits, labels = drawn({**curves, "train": curves["train"] * [[40, 1]]})  # as at 120k
    assert limits == (0, 120_000 * 1.04)
    assert "cartpole-swingup: PlaNet at 100k steps: 297" in labels
    assert not any("500k" in label for label in labels)


def test_paper_references():
    assert task_of("dmc:walker-walk") == "walker-walk"
    assert {task: planet_returns(task)["table1"] for task in TASKS} == {
        "cartpole-swingup": 821, "reacher-easy": 832, "cheetah-run": 662, "finger-spin": 700,
        "ball_in_cup-catch": 930, "walker-walk": 951,
    }
    assert planet_returns("walker-walk") == {"table1": 951, "100k": 224, "500k": 351}
    assert planet_returns("toy:dot") == {}


def test_plot_errors_are_one_line(smoke_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "plot", tmp_path / "missing", "--out", tmp_path / "c.png")
    assert_one_line_error(code, err, "does not exist")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"seed": 1}))
    code, _, err = run_cli(capsys, "plot", bare, "--out", tmp_path / "c.png")
    assert_one_line_error(code, err, "no metrics")
    code, _, err = run_cli(capsys, "plot", smoke_run, "--out", tmp_path / "c.jpg")
    assert_one_line_error(code, err, ".png")
    code, _, err = run_cli(capsys, "plot", smoke_run, "--width", 100, "--out", tmp_path / "c.png")
    assert_one_line_error(code, err, "--width must be at least 200")


def test_run_labels_grow_until_they_tell_runs_apart(tmp_path):
    from planet.plot import run_labels

    one = tmp_path / "sweep-a" / "walker-walk" / "s1"
    two = tmp_path / "sweep-b" / "walker-walk" / "s1"
    assert run_labels([one, two]) == ["sweep-a/walker-walk/s1", "sweep-b/walker-walk/s1"]
    assert run_labels([one, one.parent / "s0"]) == ["walker-walk/s1", "walker-walk/s0"]
    assert run_labels([one]) == ["walker-walk/s1"]
