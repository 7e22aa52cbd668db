import numpy as np
import pytest

from planet.data.replay import EpisodeReplay, ReplayError, list_episode_files, load_episode


def make_episode(index: int, steps: int, obs_shape=(3, 8, 8)):
    """Every value encodes (episode index, row) so a chunk shows where it came from."""
    rows = steps + 1
    obs = np.zeros((rows, *obs_shape), np.uint8)
    obs[:, 0, 0, 0] = index * 8  # survives 5-bit quantisation
    obs[:, 1, 0, 0] = np.arange(rows) * 8 % 256
    action = np.stack([np.full(rows, index, np.float32), np.arange(rows, dtype=np.float32)], 1)
    reward = np.arange(rows, dtype=np.float32) + 1000 * index
    return {"obs": obs, "action": action, "reward": reward}


def test_chunks_are_contiguous_and_never_cross_episodes():
    replay = EpisodeReplay()
    for index, steps in enumerate([12, 30, 9, 20]):
        replay.add(make_episode(index, steps))
    chunks = replay.sample(batch_size=500, chunk_length=10, rng=np.random.default_rng(0))
    assert chunks.obs.shape == (10, 500, 3, 8, 8)
    assert chunks.action.shape == (10, 500, 2)
    assert chunks.reward.shape == (10, 500)
    episode_of = chunks.action[:, :, 0]
    assert (episode_of == episode_of[:1]).all(), "a chunk mixes episodes"
    rows = chunks.action[:, :, 1]
    assert (np.diff(rows, axis=0) == 1).all(), "a chunk is not contiguous"
    assert (chunks.reward == rows + 1000 * episode_of).all()
    # The 9-step episode (10 rows) has exactly one valid start; all four episodes are drawn.
    assert set(np.unique(episode_of[0])) == {0, 1, 2, 3}


def test_storage_is_uint8_and_grows_per_episode():
    replay = EpisodeReplay()
    replay.add(make_episode(0, 5))
    assert replay.episodes[0]["obs"].dtype == np.uint8
    assert replay.episodes[0]["obs"].nbytes == 6 * 3 * 8 * 8  # nothing preallocated
    assert replay.num_steps == 5
    chunks = replay.sample(4, 3, np.random.default_rng(0))
    assert chunks.obs.dtype == np.uint8


def test_a_chunk_as_long_as_the_only_episode_starts_at_row_0_and_a_longer_one_raises():
    replay = EpisodeReplay()
    replay.add(make_episode(0, 4))  # 5 rows
    chunks = replay.sample(8, 5, np.random.default_rng(1))
    assert (chunks.action[:, :, 1] == np.arange(5)[:, None]).all()
    with pytest.raises(ReplayError, match="no episode is long enough for chunks of 6"):
        replay.sample(8, 6, np.random.default_rng(1))


def test_sampling_is_uniform_over_start_rows():
    replay = EpisodeReplay()
    replay.add(make_episode(0, 4))  # rows 0..4: 2 starts (0, 1) for chunks of 4
    replay.add(make_episode(1, 13))  # rows 0..13: 11 starts
    chunks = replay.sample(12000, 4, np.random.default_rng(2))
    share_short = (chunks.action[0, :, 0] == 0).mean()
    assert share_short == pytest.approx(2 / 13, abs=0.02)


def test_episodes_on_disk_round_trip_and_memory_cap(tmp_path):
    replay = EpisodeReplay(tmp_path, max_episodes_in_memory=2)
    for index in range(5):
        replay.add(make_episode(index, 6))
    assert sorted(path.name for path in tmp_path.glob("*.npz")) == [
        f"{index:06d}_6.npz" for index in range(5)
    ]
    assert replay.resident == 2
    # Evicted episodes are still sampled, read back from disk.
    chunks = replay.sample(300, 7, np.random.default_rng(0))
    assert set(np.unique(chunks.action[0, :, 0])) == set(range(5))
    reloaded = EpisodeReplay.load(tmp_path)
    assert len(reloaded) == 5 and reloaded.num_steps == 30
    np.testing.assert_array_equal(reloaded.episodes[3]["reward"], make_episode(3, 6)["reward"])


def test_bad_episodes_are_refused(tmp_path):
    replay = EpisodeReplay()
    episode = make_episode(0, 4)
    episode["reward"] = episode["reward"][:-1]
    with pytest.raises(ReplayError, match="share a length"):
        replay.add(episode)
    path = tmp_path / "000000_4.npz"
    path.write_bytes(b"not an npz")
    with pytest.raises(ReplayError, match="000000_4.npz is unreadable"):
        load_episode(path)


def test_episode_files_are_listed_by_number_past_six_digits(tmp_path):
    names = ["1000000_5.npz", "999999_5.npz", "000002_5.npz", "notes.npz", "000001_x.npz"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in list_episode_files(tmp_path)] == [
        "000002_5.npz", "999999_5.npz", "1000000_5.npz"]


def test_a_folder_with_a_gap_or_a_misnamed_episode_is_refused_on_load(tmp_path):
    replay = EpisodeReplay(tmp_path)
    for index in range(3):
        replay.add(make_episode(index, 6))
    (tmp_path / "000001_6.npz").rename(tmp_path / "000001_5.npz")  # the name lies
    with pytest.raises(ReplayError, match="000001_5.npz holds 6 steps, but its name says 5; "
                                          "the file is damaged"):
        EpisodeReplay.load(tmp_path)
    (tmp_path / "000001_5.npz").unlink()  # a gap
    with pytest.raises(ReplayError, match="not contiguous: expected index 1, found 000002_6.npz"):
        EpisodeReplay.load(tmp_path)
    assert len(EpisodeReplay.load(tmp_path, limit=1)) == 1  # what a checkpoint needs is there
