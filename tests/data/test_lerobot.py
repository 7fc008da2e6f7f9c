"""The LeRobot v3.0 dataset layer: exact round trips, appends, file splitting, refusals, corruption."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psi_gym.data import lerobot
from psi_gym.data.episode import Episode, EpisodeError
from psi_gym.data.lerobot import (
    DatasetError,
    EpisodeDataset,
    append_episodes,
    read_episodes,
    write_dataset,
)
from psi_gym.data.video import read_video, side_by_side, write_video

STATE_DIM = 22
ACTION_DIM = 22


def make_episode(
    rng: np.random.Generator,
    embodiment: str = "human",
    steps: int = 6,
    size: int = 64,
    state_dim: int = STATE_DIM,
    instruction: str = "pick up the red cube",
    frames: np.ndarray | None = None,
    seed: int = 0,
) -> Episode:
    """A synthetic episode: random uint8 frames, random float32 arrays, nested scene/metadata."""

    def floats(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    human = embodiment == "human"
    return Episode(
        task="pick_cube",
        instruction=instruction,
        embodiment=embodiment,
        frames=rng.integers(0, 256, (steps + 1, size, size, 3), dtype=np.uint8) if frames is None else frames,
        state=floats(steps + 1, state_dim),
        action=floats(steps, ACTION_DIM),
        object_pose=floats(steps + 1, 7),
        success=bool(seed % 2),
        scene={"object": "cube", "color": [1.0, 0.0, 0.0], "table": {"height": 0.75, "friction": 0.1 + seed}},
        seed=seed,
        source="demo" if human else "rollout",
        tier="precision" if human else "",
        wrist_pose=floats(steps + 1, 7) if human else None,
        keypoints=floats(steps + 1, 21, 3) if human else None,
        tactile=np.abs(floats(steps + 1, 5)) if human else None,
        perturbation="" if seed % 3 else "mass+20%",
        parent=f"demo-{seed - 1}" if seed else "",
        metadata={"operator": "sim", "noise": [0.01, 0.02], "attempt": seed},
    )


def smooth_frames(steps: int, size: int = 64, shift: int = 0) -> np.ndarray:
    """Frames a video codec can keep well: gradients with a square moving across them."""
    y, x = np.mgrid[0:size, 0:size]
    frames = []
    for t in range(steps + 1):
        frame = np.stack([x * 3 + t * 2 + shift, y * 3, (x + y) + 40], axis=-1).clip(0, 255).astype(np.uint8)
        corner = (4 + 2 * t) % (size - 12)
        frame[corner:corner + 10, corner:corner + 10] = (230, 40, 40)
        frames.append(frame)
    return np.stack(frames)


def assert_same_episode(expected: Episode, got: Episode, exact_frames: bool = True) -> None:
    for name in Episode.__dataclass_fields__:
        want, have = getattr(expected, name), getattr(got, name)
        if name == "frames" and not exact_frames:
            assert have.shape == want.shape and have.dtype == want.dtype
            continue
        if isinstance(want, np.ndarray):
            assert isinstance(have, np.ndarray), name
            assert have.dtype == want.dtype and have.shape == want.shape, name
            assert np.array_equal(have, want), f"{name} differs"
        else:
            assert have == want and type(have) is type(want), f"{name}: {have!r} != {want!r}"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def human_dataset(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, list[Episode]]:
    episodes = [make_episode(rng, seed=seed, steps=4 + seed) for seed in range(3)]
    return write_dataset(tmp_path / "human", episodes, fps=10, robot_type="psi_hand"), episodes


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("embodiment", ["human", "robot"])
def test_png_round_trip_is_exact(tmp_path: Path, rng: np.random.Generator, embodiment: str) -> None:
    episodes = [make_episode(rng, embodiment, steps=5, seed=seed) for seed in range(3)]
    episodes.append(make_episode(rng, embodiment, steps=0, seed=3, instruction="wave"))  # one frame, no action
    root = write_dataset(tmp_path / embodiment, episodes)

    dataset = EpisodeDataset(root)
    assert len(dataset) == len(episodes)
    for expected, got in zip(episodes, dataset):
        assert_same_episode(expected, got)
    assert_same_episode(episodes[-1], dataset[-1])
    for expected, got in zip(episodes, read_episodes(root)):
        assert_same_episode(expected, got)


def test_layout_matches_lerobot_v3(human_dataset: tuple[Path, list[Episode]]) -> None:
    root, episodes = human_dataset
    frames_total = sum(episode.frames.shape[0] for episode in episodes)

    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["robot_type"] == "psi_hand" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, frames_total, 1)
    assert info["splits"] == {"train": "0:3"} and info["video_path"] is None
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["features"]["observation.images.cam"] == {
        "dtype": "image", "shape": [64, 64, 3], "names": ["height", "width", "channels"]}
    assert info["features"]["observation.keypoints"]["shape"] == [21, 3]
    for key in ("observation.state", "action", "observation.object_pose", "observation.wrist_pose",
                "observation.tactile", "timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert key in info["features"]
    # LeRobot computes its own action_is_pad and would read a stored one as an action feature
    assert not any(key.startswith("action") and key != "action" for key in info["features"])
    assert info["complete"] is True and info["planned_episodes"] == 3

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["pick up the red cube"]
    assert tasks.column("task_index").to_pylist() == [0]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]

    meta = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")
    assert meta.column("episode_index").to_pylist() == [0, 1, 2]
    assert meta.column("tasks").to_pylist() == [["pick up the red cube"]] * 3
    assert meta.column("length").to_pylist() == [episode.frames.shape[0] for episode in episodes]
    assert meta.column("dataset_to_index").to_pylist()[-1] == frames_total
    assert meta.column("task_name").to_pylist() == ["pick_cube"] * 3
    assert json.loads(meta.column("scene_json")[2].as_py()) == episodes[2].scene

    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert data.num_rows == frames_total
    assert data.schema.field("observation.images.cam").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())])
    image = data.column("observation.images.cam")[0].as_py()
    assert image["bytes"].startswith(b"\x89PNG") and image["path"] is None
    assert data.column("index").to_pylist() == list(range(frames_total))
    first = data.slice(0, episodes[0].frames.shape[0])
    assert "action_is_pad" not in data.column_names
    assert np.allclose(first.column("action")[-1].as_py(), episodes[0].action[-1])  # last action repeated
    assert np.allclose(first.column("timestamp").to_numpy(), np.arange(first.num_rows) / 10)

    stats = json.loads((root / "meta/stats.json").read_text())
    assert stats == info["stats"]  # LeRobot's copy of the stats info.json commits
    states = np.concatenate([episode.state for episode in episodes]).astype(np.float64)
    assert np.allclose(stats["observation.state"]["mean"], states.mean(0))
    assert np.allclose(stats["observation.state"]["std"], states.std(0))
    assert stats["observation.state"]["count"] == [frames_total]
    assert stats["action"]["count"] == [sum(episode.num_steps for episode in episodes)]  # pad rows left out
    image_stats = np.asarray(stats["observation.images.cam"]["mean"])
    assert image_stats.shape == (3, 1, 1) and ((0 <= image_stats) & (image_stats <= 1)).all()


def test_one_dimensional_feature_is_a_scalar_column(tmp_path: Path, rng: np.random.Generator) -> None:
    episode = make_episode(rng, "robot", state_dim=1)  # LeRobot reads shape [1] as a plain value
    root = write_dataset(tmp_path / "scalar", [episode])
    assert pq.read_schema(root / "data/chunk-000/file-000.parquet").field("observation.state").type == pa.float32()
    assert_same_episode(episode, read_episodes(root)[0])


def test_episodes_table_holds_metadata_without_frames(human_dataset: tuple[Path, list[Episode]]) -> None:
    root, episodes = human_dataset
    dataset = EpisodeDataset(root)
    assert dataset.episodes_table.column("success").to_pylist() == [episode.success for episode in episodes]
    assert dataset.episodes_table.column("seed").to_pylist() == [0, 1, 2]
    assert dataset.info["total_episodes"] == 3 and dataset.tasks == ["pick up the red cube"]
    assert not dataset._cache  # nothing decoded yet


# ------------------------------------------------------------------------------------ appends and files


def test_append_keeps_old_episodes(human_dataset: tuple[Path, list[Episode]], rng: np.random.Generator) -> None:
    root, old = human_dataset
    old_file = root / "data/chunk-000/file-000.parquet"
    old_digest = file_digest(old_file)
    new = [make_episode(rng, seed=10, instruction="push the cube"), make_episode(rng, seed=11)]

    append_episodes(root, new)

    assert file_digest(old_file) == old_digest  # old data untouched, new data in a new file
    assert (root / "data/chunk-000/file-001.parquet").is_file()
    dataset = EpisodeDataset(root)
    assert len(dataset) == 5
    for expected, got in zip(old + new, dataset):
        assert_same_episode(expected, got)
    assert dataset.info["total_tasks"] == 2 and dataset.tasks == ["pick up the red cube", "push the cube"]
    assert dataset.info["splits"] == {"train": "0:5"}
    data = pq.read_table(root / "data/chunk-000/file-001.parquet")
    assert data.column("task_index").to_pylist()[0] == 1
    assert data.column("index")[0].as_py() == sum(episode.frames.shape[0] for episode in old)

    stats = json.loads((root / "meta/stats.json").read_text())
    poses = np.concatenate([episode.object_pose for episode in old + new]).astype(np.float64)
    assert np.allclose(stats["observation.object_pose"]["mean"], poses.mean(0))
    assert np.allclose(stats["observation.object_pose"]["std"], poses.std(0))
    assert np.allclose(stats["observation.object_pose"]["min"], poses.min(0))


def test_tiny_size_limits_split_into_files_and_chunks(tmp_path: Path, rng: np.random.Generator) -> None:
    episodes = [make_episode(rng, "robot", steps=3, size=16, seed=seed) for seed in range(5)]
    root = write_dataset(tmp_path / "split", episodes, chunks_size=2, data_files_size_in_mb=1e-6)

    files = sorted(str(path.relative_to(root)) for path in root.glob("data/*/*.parquet"))
    assert files == ["data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet",
                     "data/chunk-001/file-000.parquet", "data/chunk-001/file-001.parquet",
                     "data/chunk-002/file-000.parquet"]
    append_episodes(root, [make_episode(rng, "robot", steps=2, size=16, seed=9)])
    assert (root / "data/chunk-002/file-001.parquet").is_file()
    for expected, got in zip(episodes, read_episodes(root)):
        assert_same_episode(expected, got)
    assert len(EpisodeDataset(root)) == 6


def test_many_episodes_share_a_file_under_the_limit(tmp_path: Path, rng: np.random.Generator) -> None:
    episodes = [make_episode(rng, "robot", steps=3, size=16, seed=seed) for seed in range(6)]
    # each episode is ~3.5 kB in memory: about 3 fit under 0.01 MB
    root = write_dataset(tmp_path / "shared", episodes, data_files_size_in_mb=0.01)
    counts = [pq.read_metadata(path).num_rows for path in sorted(root.glob("data/*/*.parquet"))]
    assert 1 < len(counts) < len(episodes) and sum(counts) == 6 * 4
    for expected, got in zip(episodes, read_episodes(root)):
        assert_same_episode(expected, got)


# ------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(embodiment="robot"), "embodiment is 'robot'.*observation.keypoints is missing"),
        (dict(state_dim=20), r"observation.state has shape \[20\] but the dataset's is \[22\]"),
        (dict(size=32), r"observation.images.cam has shape \[32, 32, 3\]"),
    ],
)
def test_mismatched_episode_is_rejected(human_dataset: tuple[Path, list[Episode]], rng: np.random.Generator,
                                        change: dict, message: str) -> None:
    root, old = human_dataset
    before = {path: file_digest(path) for path in root.rglob("*") if path.is_file()}
    with pytest.raises(EpisodeError, match=message):
        append_episodes(root, [make_episode(rng, **change)])
    assert {path: file_digest(path) for path in root.rglob("*") if path.is_file()} == before
    with pytest.raises(EpisodeError, match=message):
        write_dataset(root.with_name("mixed"), [old[0], make_episode(rng, **change)])
    assert not root.with_name("mixed").exists()


def test_invalid_episode_is_rejected_with_its_position(tmp_path: Path, rng: np.random.Generator) -> None:
    broken = make_episode(rng).replace(action=np.zeros((3, ACTION_DIM), np.float32))
    with pytest.raises(EpisodeError, match="episode 1 is invalid: action must have 6 rows"):
        write_dataset(tmp_path / "broken", [make_episode(rng), broken])
    with pytest.raises(EpisodeError, match="at least one episode"):
        write_dataset(tmp_path / "empty", [])


def test_refuses_to_overwrite_unless_asked(human_dataset: tuple[Path, list[Episode]], rng: np.random.Generator,
                                           tmp_path: Path) -> None:
    root, _ = human_dataset
    replacement = [make_episode(rng, "robot", seed=7)]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_dataset(root, replacement)
    assert len(EpisodeDataset(root)) == 3

    write_dataset(root, replacement, overwrite=True)
    assert_same_episode(replacement[0], read_episodes(root)[0])
    assert [p.name for p in root.parent.glob("human*")] == ["human"]  # no .tmp-*/.old-* left

    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no dataset"):
        write_dataset(unrelated, replacement, overwrite=True)
    assert (unrelated / "todo.txt").read_text() == "keep me"

    empty = tmp_path / "empty"
    empty.mkdir()
    write_dataset(empty, replacement)  # an empty directory is fine
    assert len(EpisodeDataset(empty)) == 1


# ------------------------------------------------------------------------------------ crashes


def test_failed_write_leaves_no_dataset_at_root(tmp_path: Path, rng: np.random.Generator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    episodes = [make_episode(rng, seed=seed) for seed in range(3)]
    real_encode = lerobot._encode_png
    calls = {"n": 0}

    def encode_then_die(frame: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] > 10:
            raise RuntimeError("disk on fire")
        return real_encode(frame)

    monkeypatch.setattr(lerobot, "_encode_png", encode_then_die)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_dataset(tmp_path / "ds", episodes)
    assert not list(tmp_path.glob("ds*"))  # neither the dataset nor its temporary folder

    monkeypatch.setattr(lerobot, "_encode_png", real_encode)
    root = write_dataset(tmp_path / "ds", episodes[:1])
    calls["n"] = 0
    monkeypatch.setattr(lerobot, "_encode_png", encode_then_die)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_dataset(root, episodes, overwrite=True)
    assert_same_episode(episodes[0], read_episodes(root)[0])  # the old dataset is still there, whole


@pytest.mark.parametrize("dies_at, committed", [("tasks.parquet", False), ("file-000.parquet", False),
                                                ("info.json", False), ("stats.json", True)])
def test_append_that_dies_midway_keeps_the_old_dataset(human_dataset: tuple[Path, list[Episode]],
                                                       rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
                                                       dies_at: str, committed: bool) -> None:
    root, old = human_dataset
    new = [make_episode(rng, seed=20, instruction="push the cube")]
    real_parquet, real_bytes = lerobot._write_parquet_atomic, lerobot.write_bytes_atomic

    def die_at(real, path_argument: int):
        def write(*args) -> None:
            path = Path(args[path_argument])
            # file-000.parquet: die writing the episodes table, after the new data file is in
            if path.name == dies_at and "data" not in path.parts:
                raise RuntimeError("killed")
            real(*args)
        return write

    monkeypatch.setattr(lerobot, "_write_parquet_atomic", die_at(real_parquet, 1))  # (table, path)
    monkeypatch.setattr(lerobot, "write_bytes_atomic", die_at(real_bytes, 0))  # (path, data)
    with pytest.raises(RuntimeError, match="killed"):
        append_episodes(root, new)
    assert (root / "data/chunk-000/file-001.parquet").is_file()  # a leftover of the dead append, or its data
    monkeypatch.undo()

    # info.json is the commit point: before it nothing changed, after it (stats.json is LeRobot's
    # copy, written last) the append is in, and opening the dataset brings stats.json up to date
    dataset = EpisodeDataset(root)
    expected = old + new if committed else old
    assert len(dataset) == len(expected)
    for want, got in zip(expected, dataset):
        assert_same_episode(want, got)
    assert json.loads((root / "meta/stats.json").read_text()) == dataset.info["stats"]
    assert dataset.stats["observation.state"]["count"][0] == dataset.info["total_frames"]

    if not committed:
        append_episodes(root, new)
    for want, got in zip(old + new, read_episodes(root)):
        assert_same_episode(want, got)
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("*.tmp-*"))


# ------------------------------------------------------------------------------------ corruption


def _rewrite_data(root: Path, change) -> None:
    path = root / "data/chunk-000/file-000.parquet"
    pq.write_table(change(pq.read_table(path)), path)


def _break_png(table: pa.Table) -> pa.Table:
    column = table.column("observation.images.cam").combine_chunks()
    png = column.field("bytes").to_pylist()
    png[1] = png[1][:40] + b"garbage" * 10
    broken = pa.StructArray.from_arrays([pa.array(png, pa.binary()), column.field("path")], names=["bytes", "path"])
    return table.set_column(0, "observation.images.cam", broken)


def _edit_info(root: Path, **changes) -> None:
    path = root / "meta/info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


CORRUPTIONS = {
    "deleted info.json": (lambda root: (root / "meta/info.json").unlink(), r"meta/info.json: missing"),
    "garbage info.json": (lambda root: (root / "meta/info.json").write_text("{not json"), "expected a JSON object"),
    "wrong version": (lambda root: _edit_info(root, codebase_version="v2.1"), "codebase_version is 'v2.1'"),
    "truncated data parquet": (
        lambda root: (root / "data/chunk-000/file-000.parquet").write_bytes(
            (root / "data/chunk-000/file-000.parquet").read_bytes()[:5000]),
        r"data/chunk-000/file-000.parquet: expected a parquet data file"),
    "garbage data parquet": (
        lambda root: (root / "data/chunk-000/file-000.parquet").write_bytes(b"\x00garbage" * 500),
        r"data/chunk-000/file-000.parquet: expected a parquet data file"),
    "garbage episodes parquet": (
        lambda root: (root / "meta/episodes/chunk-000/file-000.parquet").write_bytes(b"PAR1 nope"),
        r"meta/episodes/chunk-000/file-000.parquet: expected a parquet file with one row per episode"),
    "deleted tasks": (lambda root: (root / "meta/tasks.parquet").unlink(), r"meta/tasks.parquet: missing"),
    "deleted data file": (lambda root: (root / "data/chunk-000/file-000.parquet").unlink(),
                          r"file-000.parquet: missing; episodes \[0, 1, 2\]"),
    "missing column": (lambda root: _rewrite_data(root, lambda table: table.drop_columns(["observation.state"])),
                       "missing column 'observation.state'"),
    "wrong column type": (
        lambda root: _rewrite_data(root, lambda table: table.set_column(
            table.schema.get_field_index("frame_index"), "frame_index",
            table.column("frame_index").cast(pa.int32()))),
        "column 'frame_index' has type int32, expected int64"),
    "dropped rows": (lambda root: _rewrite_data(root, lambda table: table.slice(0, table.num_rows - 1)),
                     "lengths don't match"),
    "wrong feature dtype": (
        lambda root: _edit_info(root, features={**json.loads((root / "meta/info.json").read_text())["features"],
                                                "action": {"dtype": "float64", "shape": [22], "names": None}}),
        "feature action has dtype 'float64', expected float32"),
    "total_frames off": (lambda root: _edit_info(root, total_frames=999), "total_frames is 999"),
    "total_episodes too big": (lambda root: _edit_info(root, total_episodes=7), "3 episode rows, expected 7"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_dataset_raises_dataset_error(human_dataset: tuple[Path, list[Episode]], corruption: str) -> None:
    root, _ = human_dataset
    corrupt, message = CORRUPTIONS[corruption]
    corrupt(root)
    with pytest.raises(DatasetError, match=message):
        read_episodes(root)
    with pytest.raises(DatasetError):
        append_episodes(root, [])


def test_undecodable_png_raises_dataset_error(human_dataset: tuple[Path, list[Episode]]) -> None:
    root, _ = human_dataset
    _rewrite_data(root, _break_png)
    dataset = EpisodeDataset(root)  # the footer is fine: the damage shows when frames are decoded
    with pytest.raises(DatasetError, match=r"file-000.parquet, episode 0, frame 1: PNG does not decode"):
        dataset[0]


def test_episode_index_out_of_range(human_dataset: tuple[Path, list[Episode]], tmp_path: Path) -> None:
    root, _ = human_dataset
    dataset = EpisodeDataset(root)
    with pytest.raises(DatasetError, match="episode index 3 out of range; the dataset has 3 episodes"):
        dataset[3]
    with pytest.raises(IndexError):  # also an IndexError, as sequences raise
        dataset[-4]
    with pytest.raises(DatasetError, match="no dataset there"):
        EpisodeDataset(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------ video


def test_video_mode_round_trip_is_close(tmp_path: Path, rng: np.random.Generator) -> None:
    episodes = [make_episode(rng, seed=seed, steps=5 + seed, frames=smooth_frames(5 + seed, shift=10 * seed))
                for seed in range(3)]
    root = write_dataset(tmp_path / "video", episodes, video=True)

    assert (root / "videos/observation.images.cam/chunk-000/file-000.mp4").is_file()
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.images.cam"]["dtype"] == "video"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert "observation.images.cam" not in pq.read_schema(root / "data/chunk-000/file-000.parquet").names
    meta = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")
    assert meta.column("videos/observation.images.cam/from_timestamp").to_pylist() == [0.0, 0.6, 1.3]
    assert meta.column("videos/observation.images.cam/to_timestamp").to_pylist() == [0.6, 1.3, 2.1]

    appended = make_episode(rng, seed=5, steps=4, frames=smooth_frames(4))
    append_episodes(root, [appended])
    episodes.append(appended)
    for expected, got in zip(episodes, read_episodes(root)):
        assert_same_episode(expected, got, exact_frames=False)  # everything else stays exact
        error = np.abs(got.frames.astype(np.int16) - expected.frames).mean()
        assert error < 4.0, f"mean abs error {error:.2f} grey levels"


def test_broken_video_raises_dataset_error(tmp_path: Path, rng: np.random.Generator) -> None:
    root = write_dataset(tmp_path / "video", [make_episode(rng, frames=smooth_frames(6))], video=True)
    video_path = root / "videos/observation.images.cam/chunk-000/file-000.mp4"
    video_path.write_bytes(b"\x00not an mp4" * 100)
    with pytest.raises(DatasetError, match="file-000.mp4: could not decode the video"):
        read_episodes(root)
    video_path.unlink()
    with pytest.raises(DatasetError, match="file-000.mp4: missing"):
        EpisodeDataset(root)


def test_write_video_read_video_round_trip(tmp_path: Path) -> None:
    frames = smooth_frames(11)
    path = write_video(tmp_path / "clips" / "clip.mp4", frames, fps=10)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    decoded = read_video(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 4.0

    odd = np.random.default_rng(1).integers(0, 256, (3, 21, 35, 3), dtype=np.uint8)  # odd sizes work too
    assert read_video(write_video(tmp_path / "odd.mp4", odd, fps=5)).shape == odd.shape
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        write_video(tmp_path / "bad.mp4", frames.astype(np.float32), fps=10)
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")


def test_side_by_side_pads_the_shorter_video() -> None:
    predicted = np.zeros((5, 8, 8, 3), np.uint8)
    true = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.ones((3, 8, 6, 3), np.uint8)
    both = side_by_side(predicted, true)
    assert both.shape == (5, 8, 14, 3)
    assert (both[:, :, 8:] == np.array([0, 1, 2, 2, 2], np.uint8)[:, None, None, None]).all()
    with pytest.raises(ValueError, match="one frame height"):
        side_by_side(predicted, np.zeros((5, 9, 8, 3), np.uint8))
