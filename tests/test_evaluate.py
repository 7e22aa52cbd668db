"""`planet evaluate` on the smoke-trained run, TensorBoard media from training, error cases."""

from __future__ import annotations

import io
import json
import shutil

import imageio.v2 as imageio
import numpy as np
import PIL.Image
import PIL.ImageSequence
import pytest

from planet.cli import main

# 80 env steps at cartpole's action repeat 8: 10 agent steps, 11 frames per episode.
QUICK = ["--max-episode-steps", "80"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_evaluate_writes_returns_and_video(smoke_run, tmp_path, capsys):
    video, summary_path = tmp_path / "agent.mp4", tmp_path / "eval.json"
    code, out, err = run_cli(capsys, "evaluate", smoke_run, "--episodes", 2, "--video", video,
                             "--json", summary_path, *QUICK)
    assert code == 0, err
    summary = json.loads(summary_path.read_text())
    assert len(summary["returns"]) == 2 and summary["episodes"] == 2
    assert summary["agent_steps"] == [10, 10]
    assert len(set(summary["env_seeds"])) == 2  # each env seeded differently
    assert summary["return_mean"] == pytest.approx(np.mean(summary["returns"]))
    assert summary["return_min"] == min(summary["returns"])
    assert summary["return_max"] == max(summary["returns"])
    assert summary["return_std"] == pytest.approx(np.std(summary["returns"]))
    assert summary["checkpoint"].endswith("episode_000003.pt")
    assert summary["episodes_trained"] == 3 and summary["env_steps_trained"] == 3000
    # The hash names the run's config.json, not the overrides of this command.
    from planet.run_files import load_run_config

    assert summary["config_hash"] == load_run_config(smoke_run).hash()
    assert summary["overrides"] == {"env.max_episode_steps": 80}
    from planet.utils import choose_device

    assert summary["device"] == str(choose_device("auto"))  # the run's: device auto
    assert f"return: mean {summary['return_mean']:.2f}, std {summary['return_std']:.2f}" in out
    # Decode the video back (iterate: list() would ask the reader its length, infinite):
    # 2 episodes x 11 frames, upscaled to 256 x 256, real content.
    frames = np.stack([f for f in imageio.get_reader(video, format="FFMPEG")])
    assert frames.shape == (22, 256, 256, 3)
    assert frames[5].std() > 10  # not a blank frame
    # The same run, as a gif at 128 px, into the run dir's default eval.json (on a copy).
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    code, _, err = run_cli(capsys, "evaluate", run, "--episodes", 1, "--video",
                           tmp_path / "agent.gif", "--size", 128, *QUICK)
    assert code == 0, err
    assert len(json.loads((run / "eval.json").read_text())["returns"]) == 1
    gif = imageio.mimread(tmp_path / "agent.gif")
    assert len(gif) == 11 and gif[0].shape[:2] == (128, 128)


def test_evaluate_sheet_is_a_row_of_frames_per_episode(smoke_run, tmp_path, capsys):
    sheet, video = tmp_path / "agent.png", tmp_path / "agent.gif"
    code, out, err = run_cli(capsys, "evaluate", smoke_run, "--episodes", 2, "--sheet", sheet,
                             "--sheet-columns", 4, "--video", video, "--size", 64,
                             "--json", tmp_path / "eval.json", *QUICK)
    assert code == 0, err
    image = np.asarray(PIL.Image.open(sheet).convert("RGB"))
    # 2 rows x 4 columns of 64 px frames, 2 px apart.
    assert image.shape == (2 * 64 + 2, 4 * 64 + 2 * 3, 3)
    assert "wrote " + str(sheet) in out
    assert json.loads((tmp_path / "eval.json").read_text())["sheet"] == str(sheet)
    # The cells are the video's frames 0, 3, 7 and 10 of each 11-frame episode (0-based steps
    # spread evenly from reset to the end), the second row episode 2's.
    frames = imageio.mimread(video)
    for row, episode_start in enumerate((0, 11)):
        for column, step in enumerate((0, 3, 7, 10)):
            cell = image[row * 66:row * 66 + 64, column * 66:column * 66 + 64]
            assert np.abs(cell.astype(int) - frames[episode_start + step][..., :3]).mean() < 3
    assert (image[64:66] == 16).all() and (image[:, 64:66] == 16).all()  # the gaps


def test_training_logs_eval_video_and_open_loop_to_tensorboard(smoke_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(smoke_run / "tb"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert "eval/video" in tags and "model/open_loop" in tags, tags
    gif = events.Images("eval/video")[-1]
    assert gif.encoded_image_string[:6] == b"GIF89a"
    frames = imageio.mimread(gif.encoded_image_string, format="GIF")
    assert frames[0].shape[:2] == (128, 128)  # 64 x 64 frames, upscaled 2x
    # A whole episode, 126 frames at 20 fps. Pillow stores a frame equal to the one before as a
    # longer display time of that one, so the durations, not the frame count, add up to 126.
    with PIL.Image.open(io.BytesIO(gif.encoded_image_string)) as animation:
        durations = [frame.info["duration"] for frame in PIL.ImageSequence.Iterator(animation)]
    assert len(durations) == len(frames) and sum(durations) == 126 * 50
    strip = events.Images("model/open_loop")[-1]
    assert (strip.height, strip.width) == (3 * 64, 12 * 64)
    assert "eval/return" in events.Tags()["scalars"]


def test_evaluate_errors_are_one_line(smoke_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "missing")
    assert_one_line_error(code, err, "does not exist")
    # A run dir with a config but no checkpoint.
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    shutil.copy(smoke_run / "config.json", empty / "config.json")
    code, _, err = run_cli(capsys, "evaluate", empty)
    assert_one_line_error(code, err, "no checkpoint", "train first")
    # Every checkpoint damaged: not "train first" (the warnings above name each file).
    damaged = tmp_path / "damaged"
    shutil.copytree(smoke_run, damaged)
    for path in (damaged / "checkpoints").glob("*.pt"):
        path.write_bytes(path.read_bytes()[:100])
    code, _, err = run_cli(capsys, "evaluate", damaged)
    assert_one_line_error(code, err, "no readable checkpoint", "(2 damaged")
    # A checkpoint from a config with another model size.
    changed = tmp_path / "changed"
    shutil.copytree(smoke_run, changed)
    config = json.loads((changed / "config.json").read_text())
    config["model"]["belief_size"] = 48
    (changed / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "evaluate", changed)
    assert_one_line_error(code, err, "incompatible config", "model.belief_size")
    # A named checkpoint that does not exist; a video format we cannot write.
    code, _, err = run_cli(capsys, "evaluate", smoke_run, "--checkpoint", tmp_path / "x.pt")
    assert_one_line_error(code, err, "not found")
    code, _, err = run_cli(capsys, "evaluate", smoke_run, "--sheet", tmp_path / "a.jpg")
    assert_one_line_error(code, err, "--sheet", ".png", "a.jpg")
    code, _, err = run_cli(capsys, "evaluate", smoke_run, "--sheet-columns", 1)
    assert_one_line_error(code, err, "--sheet-columns", "at least 2")
    code, _, err = run_cli(capsys, "evaluate", smoke_run, "--video", tmp_path / "a.txt")
    assert_one_line_error(code, err, ".mp4")
    code, _, err = run_cli(capsys, "evaluate", smoke_run, "--episodes", 0)
    assert_one_line_error(code, err, "--episodes")
    code, _, err = run_cli(capsys, "evaluate", smoke_run, "--fps", -1)
    assert_one_line_error(code, err, "--fps must be positive")
    code, _, err = run_cli(capsys, "evaluate", smoke_run, "--size", 100)
    assert_one_line_error(code, err, "--size must be a positive multiple of 64, got 100")
    # A folder that is not a run: no config.json.
    (tmp_path / "not-a-run").mkdir()
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "not-a-run")
    assert_one_line_error(code, err, "is not a run dir", "config.json not found")


def test_image_commands_refuse_a_symbolic_run(tmp_path, capsys):
    from conftest import TINY_OVERRIDES

    from planet.config import make_config
    from planet.train import train

    run = tmp_path / "symbolic"
    config = make_config("smoke", {**TINY_OVERRIDES, "env.symbolic": True})
    train(config, run, progress=False, log=lambda *_: None)
    code, _, err = run_cli(capsys, "evaluate", run, "--video", tmp_path / "a.gif")
    assert_one_line_error(code, err, "--video needs a pixel run", "--symbolic")
    code, _, err = run_cli(capsys, "evaluate", run, "--sheet", tmp_path / "a.png")
    assert_one_line_error(code, err, "--sheet needs a pixel run")
    code, _, err = run_cli(capsys, "predict", run, "--out", tmp_path / "p.gif")
    assert_one_line_error(code, err, "predict draws images", "--symbolic")
    # Without images it evaluates as any run does.
    code, out, err = run_cli(capsys, "evaluate", run, "--episodes", 1, "--json",
                             tmp_path / "eval.json")
    assert code == 0, err
    assert json.loads((tmp_path / "eval.json").read_text())["agent_steps"] == [10]


def test_each_video_frame_carries_its_own_step_and_return_so_far(monkeypatch):
    """Row t of an episode is (a_{t-1}, r_{t-1}, o_t): frame t shows o_t and the return of the
    rewards up to it. Synthetic episode: o_t filled with 10 t, every reward 1 after the reset."""
    import planet.evaluate as evaluate

    texts = []
    monkeypatch.setattr(evaluate, "label_frame",
                        lambda frame, text, scale: texts.append(text) or frame)
    obs = np.stack([np.full((3, 64, 64), 10 * t, np.uint8) for t in range(6)])
    episode = {"obs": obs, "reward": np.array([0, 1, 1, 1, 1, 1], np.float32)}
    frames = list(evaluate.agent_video_frames([episode, episode], scale=2))
    assert len(frames) == 12 and frames[0].shape == (128, 128, 3)
    assert [int(frame[64, 64, 0]) for frame in frames[:6]] == [0, 10, 20, 30, 40, 50]
    assert texts[:6] == [f"ep 1/2 | t={t} | R={t:.1f}" for t in range(6)]
    assert texts[6].startswith("ep 2/2 | t=0 |")
