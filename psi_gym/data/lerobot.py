"""Episodes on disk in the LeRobot v3.0 dataset layout, written and read with pyarrow alone.

Layout (``codebase_version`` ``"v3.0"``; the ``lerobot`` package itself is not needed)::

    ROOT/meta/info.json                             fps, totals, file templates, feature schema;
                                                    psi_gym adds complete, planned_episodes, job
                                                    and stats (see "Commit point")
    ROOT/meta/stats.json                            min/max/mean/std/count per numeric feature
    ROOT/meta/tasks.parquet                         task (instruction string, the index) + task_index
    ROOT/meta/episodes/chunk-000/file-000.parquet   one row per episode: where its frames live,
                                                    plus the psi_gym fields of `Episode`
    ROOT/data/chunk-CCC/file-FFF.parquet            one row per frame, many episodes per file
    ROOT/videos/observation.images.cam/chunk-CCC/file-FFF.mp4   frames, only with ``video=True``

Frame rows. An episode of ``T`` steps has ``T + 1`` frames and ``T`` actions; it is stored as
``T + 1`` rows whose last ``action`` repeats the previous one (the frame after the last step has
no action of its own), and reading drops that row's action again. No column marks it: LeRobot
derives its own ``action_is_pad`` when it pads action chunks past an episode's end, and a stored
column of that name would be read as an action feature and overwritten (datasets written before
carry one; it is read and ignored). Columns: ``observation.images.cam`` (LeRobot image feature: a
struct ``{bytes: PNG, path: null}``, lossless), ``observation.state``, ``action``,
``observation.object_pose`` and, where the dataset has them, ``observation.wrist_pose``,
``observation.keypoints`` (21 x 3) and ``observation.tactile``; then ``timestamp``,
``frame_index``, ``episode_index``, ``index``, ``task_index``.

Exactness. With PNG frames (the default) `EpisodeDataset` gives back every array bit for bit
and every scalar and dict equal (``scene`` and ``metadata`` travel as JSON, so tuples come
back as lists). With ``video=True`` frames go to one H.264 mp4 per data file instead, which
is lossy: frames come back close (a few grey levels; 4:4:4 chroma below 256 px, see
`psi_gym.data.video`), everything else still exact.

One dataset holds one embodiment: the first episode fixes the feature schema (which
modalities, their shapes, the image size), as in LeRobot, and an episode that differs is
refused with an `EpisodeError` naming the mismatch.

One writer at a time. Every writer holds the dataset's lock (`psi_gym.data.atomic.hold_lock`:
``.ROOT.lock`` beside it) while it works; a second writer fails at once with
`TargetLockedError`. `write_dataset` builds the whole dataset in a temporary folder of its own
beside ``ROOT`` and swaps it into place with `replace_dir`; without ``overwrite`` the final rename
refuses to replace a dataset that appeared meanwhile.

Commit point. ``meta/info.json`` is the one commit point: its ``total_episodes`` says how many
rows of the episodes table are committed, and it carries the statistics of exactly those
episodes (``stats``). `append_episodes` only adds new data (and video) files, rewrites the
tasks and episodes tables, then info.json (each through a temporary file + ``os.replace``);
rows past ``total_episodes`` (and files they point to) are leftovers of an append that died,
ignored by the reader and cleaned up by the next writer. ``meta/stats.json`` is LeRobot's copy
of ``info["stats"]``, written after info.json; a writer killed between the two leaves it one
commit behind, and the next writer, or the next reader that can take the lock, rewrites it from
info.json. So a dataset always reads old or new, never half, and its stats agree with its
episodes.

Completeness. ``info["complete"]`` is false while a multi-batch job (`psi_gym.data.writer`) is
still adding batches; ``planned_episodes`` says how many it will hold and ``job`` what makes them
(the command and the arguments its episodes are reproducible from). `EpisodeDataset` refuses an
unfinished dataset unless ``allow_incomplete=True``, saying how to resume it. Datasets written
before these keys existed are complete.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image  # comes with imageio

from psi_gym.data.atomic import (
    TMP_MARK,
    TargetLockedError,
    hold_lock,
    is_locked,
    recover_dir,
    replacing_dir,
    write_bytes_atomic,
    write_file_atomic,
)
from psi_gym.data.episode import Episode, EpisodeError
from psi_gym.data.video import dataset_pixel_format, read_video, write_video

CODEBASE_VERSION = "v3.0"
IMAGE_KEY = "observation.images.cam"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"  # psi_gym keeps one episodes file
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
DEFAULT_CHUNKS_SIZE = 1000  # files per chunk folder, as in LeRobot
DEFAULT_DATA_FILES_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILES_SIZE_IN_MB = 200  # recorded for LeRobot; psi_gym writes one mp4 per data file

# `Episode` array field -> LeRobot feature name, with the names of the feature's entries.
ARRAY_FEATURES = {
    "state": "observation.state",
    "action": "action",
    "object_pose": "observation.object_pose",
    "wrist_pose": "observation.wrist_pose",
    "keypoints": "observation.keypoints",
    "tactile": "observation.tactile",
}
_POSE_NAMES = ["x", "y", "z", "qw", "qx", "qy", "qz"]
FEATURE_NAMES: dict[str, list[str] | None] = {
    "state": None,
    "action": None,
    "object_pose": _POSE_NAMES,
    "wrist_pose": _POSE_NAMES,
    "keypoints": ["keypoint", "xyz"],
    "tactile": ["thumb", "index", "middle", "ring", "pinky"],
}
REQUIRED_ARRAY_FIELDS = ("state", "action", "object_pose")
INDEX_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
PAD_KEY = "action_is_pad"  # a column of datasets written before; no longer written (see the module doc)
PARTIAL_SUFFIX = ".partial"  # where a multi-batch job builds its dataset (psi_gym.data.writer)
_INFO_KEYS = ("codebase_version", "fps", "total_episodes", "total_frames", "total_tasks", "chunks_size",
              "data_files_size_in_mb", "data_path", "features")


class DatasetError(EpisodeError):
    """A dataset on disk is missing, malformed or corrupt; the message names the file."""


class EpisodeIndexError(DatasetError, IndexError):
    """An episode index outside ``range(len(dataset))``."""


class IncompleteDatasetError(DatasetError):
    """The dataset's job has not finished: it holds fewer episodes than planned."""


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def write_dataset(
    root: str | os.PathLike,
    episodes: Iterable[Episode],
    fps: int = 10,
    robot_type: str | None = None,
    video: bool = False,
    *,
    overwrite: bool = False,
    chunks_size: int = DEFAULT_CHUNKS_SIZE,
    data_files_size_in_mb: float = DEFAULT_DATA_FILES_SIZE_IN_MB,
    job: dict[str, Any] | None = None,
) -> Path:
    """Write ``episodes`` as a new LeRobot v3.0 dataset at ``root``; return ``root``.

    The dataset is built in a temporary folder of this writer's own beside ``root``, under
    ``root``'s lock, and swapped into place when complete (`replace_dir`), so ``root`` never holds
    a half-written dataset. An existing non-empty dataset at ``root`` is replaced only with
    ``overwrite=True``; without it, a dataset another writer completes meanwhile is left alone
    (`FileExistsError`). ``video=True`` stores frames as mp4 (lossy) instead of PNG. A data file
    takes episodes until it would pass ``data_files_size_in_mb``; a chunk folder takes
    ``chunks_size`` files. ``job`` (JSON) is stored in info.json: what made the episodes.

    Raises:
        TargetLockedError: another process is writing ``root``.
        FileExistsError: ``root`` is a file, holds a dataset (without ``overwrite``) or holds
            files that are no dataset.
    """
    root = Path(root)
    fps = _check_layout_options(fps, chunks_size, data_files_size_in_mb)
    episodes = list(episodes)
    if not episodes:
        raise EpisodeError("write_dataset needs at least one episode: the first fixes the dataset's features")
    info = new_info(episodes[0], fps, robot_type, video, chunks_size, data_files_size_in_mb, len(episodes), job)
    with hold_lock(root):
        check_can_write(root, overwrite)
        remove_stale_temporaries(root)
        with replacing_dir(root, overwrite=overwrite) as tmp_root:
            build_dataset(tmp_root, info, episodes, complete=True)
    return root


def append_episodes(root: str | os.PathLike, episodes: Iterable[Episode], *, allow_incomplete: bool = False) -> Path:
    """Add ``episodes`` to the dataset at ``root`` without touching its existing data files.

    New episodes go to new data files; the metadata files are rewritten atomically, info.json
    (the commit point, with the stats) last, so if this dies midway the dataset still reads as it
    was before. Holds ``root``'s lock. Returns ``root``.
    """
    root = Path(root)
    with hold_lock(root):
        append_locked(root, list(episodes), allow_incomplete=allow_incomplete)
    return root


def _check_layout_options(fps: Any, chunks_size: Any, data_files_size_in_mb: Any) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps <= 0:
        raise ValueError(f"fps must be a positive int, got {fps!r}")
    if isinstance(chunks_size, bool) or not isinstance(chunks_size, int) or chunks_size <= 0:
        raise ValueError(f"chunks_size must be a positive int, got {chunks_size!r}")
    if not data_files_size_in_mb > 0:
        raise ValueError(f"data_files_size_in_mb must be positive, got {data_files_size_in_mb!r}")
    return int(fps)


def new_info(first: Episode, fps: int, robot_type: str | None, video: bool, chunks_size: int,
             data_files_size_in_mb: float, planned_episodes: int, job: dict[str, Any] | None) -> dict[str, Any]:
    """info.json of an empty dataset whose schema ``first`` fixes (totals filled in by the writers)."""
    features = _dataset_features(_validated(first, "episode 0"), fps, video)
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_files_size_in_mb,
        "video_files_size_in_mb": DEFAULT_VIDEO_FILES_SIZE_IN_MB,
        "fps": fps,
        "splits": {},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video else None,
        "features": features,
        "complete": False,
        "planned_episodes": int(planned_episodes),
        "job": job,
        "stats": {},
    }


def build_dataset(tmp_root: Path, info: dict[str, Any], episodes: list[Episode], complete: bool) -> None:
    """Write ``episodes`` as the first episodes of the dataset described by ``info`` into the
    (private, empty) folder ``tmp_root``; ``complete`` goes to info.json."""
    embodiment = episodes[0].embodiment
    for position, episode in enumerate(episodes):
        _check_episode_fits(episode, info["features"], embodiment, f"episode {position}")
    tasks: list[str] = []
    rows, stats = _write_episode_files(tmp_root, info, tasks, [], {}, episodes)
    info["complete"] = bool(complete)
    _write_metadata(tmp_root, info, tasks, rows, stats)


def append_locked(root: Path, episodes: list[Episode], *, allow_incomplete: bool = False,
                  complete: bool | None = None, info_updates: dict[str, Any] | None = None) -> None:
    """`append_episodes` for a writer that holds ``root``'s lock; ``complete`` and
    ``info_updates`` (if given) are committed with the episodes."""
    dataset = EpisodeDataset(root, allow_incomplete=allow_incomplete or complete is not None)
    if not episodes and complete is None and not info_updates:
        return
    info = copy.deepcopy(dataset.info)
    embodiment = dataset.episodes_table.column("embodiment")[0].as_py()
    for position, episode in enumerate(episodes):
        _check_episode_fits(episode, info["features"], embodiment, f"episode {position} to append")
    rows = dataset.episodes_table.to_pylist()
    tasks = list(dataset.tasks)
    stats = dataset.stats
    remove_leftovers(root, rows)
    new_rows: list[dict[str, Any]] = []
    if episodes:
        new_rows, stats = _write_episode_files(root, info, tasks, rows, stats, episodes)
    if complete is not None:
        info["complete"] = bool(complete)
    info.update(info_updates or {})
    info["planned_episodes"] = max(int(info["planned_episodes"]), info["total_episodes"])
    _write_metadata(root, info, tasks, rows + new_rows, stats)


def check_can_write(root: Path, overwrite: bool) -> None:
    """Refuse a ``root`` that is a file, holds a dataset (without ``overwrite``) or holds files that
    are no dataset (even with it: overwrite replaces datasets, never a folder handed in by mistake)."""
    if not root.exists():
        if root.is_symlink():
            raise FileExistsError(f"{root} is a dangling symlink; a dataset needs a new or empty directory")
        return
    if not root.is_dir():
        raise FileExistsError(f"{root} is a file; a dataset needs a new or empty directory")
    if not any(root.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{root} already holds files; pass overwrite=True to replace the dataset there")
    if not ((root / "meta").is_dir() or (root / "data").is_dir()):
        raise FileExistsError(f"refusing to replace {root}: it holds files but no meta/ or data/, so it is no dataset")


def remove_stale_temporaries(root: Path) -> None:
    """Delete ``ROOT.tmp-*`` folders beside ``root``: the private folders of writers that were
    killed. Only for a caller that holds ``root``'s lock (no live writer of ``root`` owns them)."""
    if root.parent.is_dir():
        for path in root.parent.glob(f"{root.name}{TMP_MARK}*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def _dataset_features(episode: Episode, fps: int, video: bool) -> dict[str, dict[str, Any]]:
    """The info.json feature schema fixed by ``episode`` (its modalities and shapes)."""
    height, width = episode.image_size
    image: dict[str, Any] = {"dtype": "video" if video else "image", "shape": [height, width, 3],
                             "names": ["height", "width", "channels"]}
    if video:
        image["info"] = {
            "video.height": height,
            "video.width": width,
            "video.codec": "h264",
            "video.pix_fmt": dataset_pixel_format(height, width),
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
        }
    features = {IMAGE_KEY: image}
    for field_name, key in ARRAY_FEATURES.items():
        value = getattr(episode, field_name)
        if value is not None:
            features[key] = {"dtype": "float32", "shape": list(value.shape[1:]), "names": FEATURE_NAMES[field_name]}
    features.update(copy.deepcopy(INDEX_FEATURES))
    return features


def _frame_shapes(episode: Episode) -> dict[str, tuple[int, ...]]:
    shapes = {IMAGE_KEY: (*episode.image_size, 3)}
    for field_name, key in ARRAY_FEATURES.items():
        value = getattr(episode, field_name)
        if value is not None:
            shapes[key] = tuple(value.shape[1:])
    return shapes


def _validated(episode: Episode, where: str) -> Episode:
    """``episode.validate()``, plus what the episodes table needs, with ``where`` in the message."""
    if not isinstance(episode, Episode):
        raise EpisodeError(f"{where} must be an Episode, got {type(episode).__name__}")
    try:
        episode.validate()
    except EpisodeError as error:
        raise EpisodeError(f"{where} is invalid: {error}") from None
    if not isinstance(episode.seed, (int, np.integer)) or not -(2**63) <= int(episode.seed) < 2**63:
        raise EpisodeError(f"{where}: seed must be an int that fits in int64, got {episode.seed!r}")
    return episode


def _check_episode_fits(episode: Episode, features: dict[str, Any], embodiment: str, where: str) -> None:
    """Raise `EpisodeError` unless ``episode`` is valid and has the dataset's features."""
    _validated(episode, where)
    expected = {key: tuple(spec["shape"]) for key, spec in features.items()
                if key == IMAGE_KEY or key in ARRAY_FEATURES.values()}
    got = _frame_shapes(episode)
    problems = []
    if episode.embodiment != embodiment:
        problems.append(f"embodiment is {episode.embodiment!r} but the dataset holds {embodiment!r} episodes")
    for key in [*expected, *(key for key in got if key not in expected)]:
        if key not in got:
            problems.append(f"{key} is missing (the dataset has it, shape {list(expected[key])})")
        elif key not in expected:
            problems.append(f"{key} is present (shape {list(got[key])}) but the dataset has no such feature")
        elif got[key] != expected[key]:
            problems.append(f"{key} has shape {list(got[key])} but the dataset's is {list(expected[key])}")
    if problems:
        raise EpisodeError(f"{where} does not fit the dataset (one dataset holds one embodiment with one "
                           f"feature schema): " + "; ".join(problems))


def _write_episode_files(
    root: Path,
    info: dict[str, Any],
    tasks: list[str],
    rows: list[dict[str, Any]],
    stats: dict[str, dict[str, np.ndarray]],
    episodes: list[Episode],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """Write data (and video) files for ``episodes`` after the existing ``rows``.

    Updates ``info`` totals and ``tasks`` in place; returns the new episode rows and the
    stats merged with the new episodes'.
    """
    fps, video = info["fps"], info["features"][IMAGE_KEY]["dtype"] == "video"
    size_limit = info["data_files_size_in_mb"] * 1024**2
    chunk_index, file_index = _next_file(rows, info["chunks_size"])
    episode_index, frame_offset = len(rows), info["total_frames"]
    new_rows: list[dict[str, Any]] = []
    group: list[tuple[Episode, pa.Table]] = []
    group_bytes = 0
    for episode in episodes:
        if episode.instruction not in tasks:
            tasks.append(episode.instruction)
        task_index = tasks.index(episode.instruction)
        table = _frame_table(episode, info["features"], episode_index, frame_offset, task_index, fps, video)
        # in video mode the raw frames stand in for the mp4 size, keeping each mp4 bounded too
        episode_bytes = table.nbytes + (episode.frames.nbytes if video else 0)
        if group and group_bytes + episode_bytes > size_limit:
            new_rows += _write_file(root, info, group, chunk_index, file_index)
            chunk_index, file_index = _following_file(chunk_index, file_index, info["chunks_size"])
            group, group_bytes = [], 0
        group.append((episode, table))
        group_bytes += episode_bytes
        stats = _merge_stats(stats, _episode_stats(episode, table))
        episode_index += 1
        frame_offset += table.num_rows
    new_rows += _write_file(root, info, group, chunk_index, file_index)
    info["total_episodes"] = episode_index
    info["total_frames"] = frame_offset
    info["total_tasks"] = len(tasks)
    info["splits"] = {"train": f"0:{episode_index}"}
    return new_rows, stats


def _next_file(rows: list[dict[str, Any]], chunks_size: int) -> tuple[int, int]:
    if not rows:
        return 0, 0
    return _following_file(rows[-1]["data/chunk_index"], rows[-1]["data/file_index"], chunks_size)


def _following_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    if file_index + 1 >= chunks_size:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


def _frame_table(episode: Episode, features: dict[str, Any], episode_index: int, first_index: int,
                 task_index: int, fps: int, video: bool) -> pa.Table:
    """One row per frame of ``episode``, columns in the order of ``features``."""
    num_frames = episode.frames.shape[0]
    frame_index = np.arange(num_frames, dtype=np.int64)
    columns: dict[str, pa.Array] = {}
    for key in features:
        if key == IMAGE_KEY:
            if not video:
                png = pa.array([_encode_png(frame) for frame in episode.frames], type=pa.binary())
                columns[key] = pa.StructArray.from_arrays([png, pa.nulls(num_frames, pa.string())],
                                                          names=["bytes", "path"])
        elif key == "action":
            # The frame after the last step has no action: repeat the last one (a zero joint
            # target would teach a policy to snap to the zero pose) and mark it as padding.
            last = episode.action[-1:] if len(episode.action) else np.zeros((1, episode.action.shape[1]), np.float32)
            padded = np.concatenate([episode.action, last])
            columns[key] = _to_fixed_size_list(padded)
        elif key in ARRAY_FEATURES.values():
            field_name = next(name for name, feature in ARRAY_FEATURES.items() if feature == key)
            columns[key] = _to_fixed_size_list(getattr(episode, field_name))
    columns["timestamp"] = pa.array((frame_index / fps).astype(np.float32))
    columns["frame_index"] = pa.array(frame_index)
    columns["episode_index"] = pa.array(np.full(num_frames, episode_index, dtype=np.int64))
    columns["index"] = pa.array(first_index + frame_index)
    columns["task_index"] = pa.array(np.full(num_frames, task_index, dtype=np.int64))
    return pa.table(columns)


def _write_file(root: Path, info: dict[str, Any], group: list[tuple[Episode, pa.Table]],
                chunk_index: int, file_index: int) -> list[dict[str, Any]]:
    """Write one data file (and its mp4 in video mode) holding ``group``; return episode rows."""
    fps, video = info["fps"], info["features"][IMAGE_KEY]["dtype"] == "video"
    data_path = root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
    _write_parquet_atomic(pa.concat_tables([table for _, table in group]), data_path)
    if video:
        video_path = root / VIDEO_PATH.format(video_key=IMAGE_KEY, chunk_index=chunk_index, file_index=file_index)
        frames = np.concatenate([episode.frames for episode, _ in group])
        write_video(video_path, frames, fps=fps, pixel_format=dataset_pixel_format(*frames.shape[1:3]))
    rows = []
    frames_before = 0
    for episode, table in group:
        first_index = table.column("index")[0].as_py()
        row: dict[str, Any] = {
            "episode_index": table.column("episode_index")[0].as_py(),
            "tasks": [episode.instruction],
            "length": table.num_rows,
            "data/chunk_index": chunk_index,
            "data/file_index": file_index,
            "dataset_from_index": first_index,
            "dataset_to_index": first_index + table.num_rows,
        }
        if video:
            prefix = f"videos/{IMAGE_KEY}"
            row[f"{prefix}/chunk_index"] = chunk_index
            row[f"{prefix}/file_index"] = file_index
            row[f"{prefix}/from_timestamp"] = frames_before / fps
            row[f"{prefix}/to_timestamp"] = (frames_before + table.num_rows) / fps
        row.update({
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
            "task_name": episode.task,
            "embodiment": episode.embodiment,
            "success": bool(episode.success),
            "seed": int(episode.seed),
            "source": episode.source,
            "tier": episode.tier,
            "perturbation": episode.perturbation,
            "parent": episode.parent,
            "scene_json": json.dumps(episode.scene),
            "metadata_json": json.dumps(episode.metadata),
            "image_height": episode.image_size[0],
            "image_width": episode.image_size[1],
        })
        rows.append(row)
        frames_before += table.num_rows
    return rows


def _episodes_schema(video: bool) -> pa.Schema:
    """Columns of meta/episodes: LeRobot's bookkeeping first, then the psi_gym fields."""
    fields = [
        ("episode_index", pa.int64()),
        ("tasks", pa.list_(pa.string())),
        ("length", pa.int64()),
        ("data/chunk_index", pa.int64()),
        ("data/file_index", pa.int64()),
        ("dataset_from_index", pa.int64()),
        ("dataset_to_index", pa.int64()),
    ]
    if video:
        prefix = f"videos/{IMAGE_KEY}"
        fields += [(f"{prefix}/chunk_index", pa.int64()), (f"{prefix}/file_index", pa.int64()),
                   (f"{prefix}/from_timestamp", pa.float64()), (f"{prefix}/to_timestamp", pa.float64())]
    fields += [
        ("meta/episodes/chunk_index", pa.int64()),
        ("meta/episodes/file_index", pa.int64()),
        ("task_name", pa.string()),
        ("embodiment", pa.string()),
        ("success", pa.bool_()),
        ("seed", pa.int64()),
        ("source", pa.string()),
        ("tier", pa.string()),
        ("perturbation", pa.string()),
        ("parent", pa.string()),
        ("scene_json", pa.string()),
        ("metadata_json", pa.string()),
        ("image_height", pa.int64()),
        ("image_width", pa.int64()),
    ]
    return pa.schema(fields)


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet, with the pandas metadata that makes ``task`` the index, as LeRobot reads it."""
    pandas_metadata = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": json.dumps(pandas_metadata).encode()})
    return pa.table({"task_index": list(range(len(tasks))), "task": tasks}, schema=schema)


def _write_metadata(root: Path, info: dict[str, Any], tasks: list[str], rows: list[dict[str, Any]],
                    stats: dict[str, dict[str, np.ndarray]]) -> None:
    """Rewrite the metadata files, each atomically: tasks, episodes, then info.json with the stats
    (the commit point), then stats.json, LeRobot's copy of them."""
    video = info["features"][IMAGE_KEY]["dtype"] == "video"
    _write_parquet_atomic(_tasks_table(tasks), root / TASKS_PATH)
    _write_parquet_atomic(pa.Table.from_pylist(rows, schema=_episodes_schema(video)), root / EPISODES_PATH)
    info["stats"] = _stats_to_json(stats)
    write_bytes_atomic(root / INFO_PATH, json.dumps(info, indent=4).encode())
    _write_stats_json(root, info["stats"])


def _stats_to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {key: {name: np.asarray(value).tolist() for name, value in feature.items()} for key, feature in stats.items()}


def _write_stats_json(root: Path, serialised: dict[str, Any]) -> None:
    write_bytes_atomic(root / STATS_PATH, json.dumps(serialised, indent=2).encode())


def remove_leftovers(root: Path, rows: list[dict[str, Any]]) -> None:
    """Delete data/video files no committed episode points to, and temporary files: remains of a
    writer that died. Only for a writer that holds ``root``'s lock."""
    referenced = {(row["data/chunk_index"], row["data/file_index"]) for row in rows}
    keep = {root / DATA_PATH.format(chunk_index=c, file_index=f) for c, f in referenced}
    keep |= {root / VIDEO_PATH.format(video_key=IMAGE_KEY, chunk_index=c, file_index=f) for c, f in referenced}
    candidates = [*root.glob("data/chunk-*/file-*"), *root.glob("videos/*/chunk-*/file-*"),
                  *root.glob("meta/**/*.tmp"), *root.glob(f"meta/**/*{TMP_MARK}*")]
    for path in candidates:
        if path.is_file() and path not in keep:
            path.unlink()


def _write_parquet_atomic(table: pa.Table, path: Path) -> None:
    write_file_atomic(path, lambda file: pq.write_table(table, file))


def _encode_png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def _to_fixed_size_list(array: np.ndarray) -> pa.Array:
    """(N, *shape) float32 -> nested fixed-size lists, as HF datasets stores Sequence/Array2D."""
    column: pa.Array = pa.array(np.ascontiguousarray(array).reshape(-1))
    for size in reversed(_list_shape(list(array.shape[1:]))):
        column = pa.FixedSizeListArray.from_arrays(column, size)
    return column


def _list_shape(shape: list[int]) -> list[int]:
    """The list nesting of a feature: LeRobot stores shape [1] as a plain scalar column."""
    return [] if shape == [1] else shape


# ---------------------------------------------------------------------------------------------
# statistics (LeRobot's stats.json: per feature min/max/mean/std/count, images per channel in [0, 1])
# ---------------------------------------------------------------------------------------------


def _episode_stats(episode: Episode, table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    stats = {IMAGE_KEY: _image_stats(episode.frames)}
    for field_name, key in ARRAY_FEATURES.items():
        value = getattr(episode, field_name)
        if value is not None and value.shape[0] > 0:
            stats[key] = _array_stats(value.astype(np.float64), count=value.shape[0])
    for key in INDEX_FEATURES:
        stats[key] = _array_stats(table.column(key).to_numpy().astype(np.float64).reshape(-1, 1), count=table.num_rows)
    return stats


def _image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of uint8 frames scaled to [0, 1], from a histogram (exact and fast)."""
    # one bincount over all channels: channel c's values land in bins [256 c, 256 c + 256)
    histogram = np.bincount((frames.reshape(-1, 3) + np.array([0, 256, 512])).ravel(), minlength=768)
    histogram = histogram.reshape(3, 256).astype(np.float64)
    levels = np.arange(256) / 255.0
    pixels = histogram.sum(axis=1)
    mean = histogram @ levels / pixels
    std = np.sqrt((histogram * (levels[None] - mean[:, None]) ** 2).sum(axis=1) / pixels)
    present = histogram > 0
    minimum = np.array([levels[row.argmax()] for row in present])
    maximum = np.array([levels[255 - row[::-1].argmax()] for row in present])
    # LeRobot keeps image stats as (C, 1, 1) so they broadcast over (C, H, W) frames
    return {"min": minimum.reshape(3, 1, 1), "max": maximum.reshape(3, 1, 1), "mean": mean.reshape(3, 1, 1),
            "std": std.reshape(3, 1, 1), "count": np.array([frames.shape[0]])}


def _array_stats(values: np.ndarray, count: int) -> dict[str, np.ndarray]:
    return {"min": values.min(axis=0), "max": values.max(axis=0), "mean": values.mean(axis=0),
            "std": values.std(axis=0), "count": np.array([count])}


def _merge_stats(old: dict[str, dict[str, np.ndarray]], new: dict[str, dict[str, np.ndarray]]
                 ) -> dict[str, dict[str, np.ndarray]]:
    """Pool two sets of stats exactly (Chan et al.'s parallel variance), weighting by count."""
    merged = dict(old)
    for key, b in new.items():
        a = old.get(key)
        if a is None:
            merged[key] = b
            continue
        n_a, n_b = float(a["count"][0]), float(b["count"][0])
        n = n_a + n_b
        delta = b["mean"] - a["mean"]
        mean = a["mean"] + delta * n_b / n
        m2 = a["std"] ** 2 * n_a + b["std"] ** 2 * n_b + delta**2 * n_a * n_b / n
        merged[key] = {"min": np.minimum(a["min"], b["min"]), "max": np.maximum(a["max"], b["max"]),
                       "mean": mean, "std": np.sqrt(m2 / n), "count": np.array([int(n)])}
    return merged


def _stats_from_json(raw: Any, where: Path) -> dict[str, dict[str, np.ndarray]]:
    try:
        return {key: {name: np.asarray(feature[name], dtype=np.float64 if name != "count" else np.int64)
                      for name in ("min", "max", "mean", "std", "count")} for key, feature in raw.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(f"{where}: expected per-feature stats {{min, max, mean, std, count}} as JSON, "
                           f"could not read them ({type(error).__name__}: {error})") from None


def _load_stats(root: Path) -> dict[str, dict[str, np.ndarray]]:
    path = root / STATS_PATH
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: expected per-feature stats {{min, max, mean, std, count}} as JSON, "
                           f"could not read them ({type(error).__name__}: {error})") from None
    return _stats_from_json(raw, path)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


class EpisodeDataset:
    """The episodes of a LeRobot v3.0 dataset written by `write_dataset`, as `Episode` objects.

    Indexed by episode (unlike ``lerobot.LeRobotDataset``, which is indexed by frame)::

        dataset = EpisodeDataset("runs/demos")
        len(dataset), dataset.info["fps"], dataset.episodes_table.column("success")
        episode = dataset[3]                # decodes that episode's frames only

    Opening validates the layout and the metadata and checks every data file's footer (row
    count, columns, types), so a broken dataset fails here with a `DatasetError` naming the
    file. Each data file is read once and kept in a small cache; PNGs are decoded per episode.

    An unfinished dataset (a multi-batch job still running, or killed: ``info["complete"]`` is
    false) is refused with an `IncompleteDatasetError` that says how to resume it, unless
    ``allow_incomplete=True``: then it reads the episodes committed so far.
    """

    def __init__(self, root: str | os.PathLike, cache_files: int = 4, *, allow_incomplete: bool = False):
        self.root = Path(root)
        if not self.root.exists():
            recover_dir(self.root)  # a writer killed in the middle of swapping the dataset in
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no dataset there (expected a directory with {INFO_PATH})"
                               + _unfinished_hint(self.root))
        self.info: dict[str, Any] = _load_info(self.root)
        if not self.info["complete"] and not allow_incomplete:
            raise IncompleteDatasetError(_incomplete_message(self.root, self.info))
        self.video: bool = self.info["features"][IMAGE_KEY]["dtype"] == "video"
        self.tasks: list[str] = _load_tasks(self.root, self.info["total_tasks"])
        self.episodes_table: pa.Table = _load_episodes_table(self.root, self.info, self.video)
        self._rows = self.episodes_table.to_pylist()
        self._file_first_index = _check_data_files(self.root, self.info, self._rows, self.video)
        self._cache: OrderedDict[tuple[int, int], tuple[pa.Table, np.ndarray | None]] = OrderedDict()
        self._cache_files = max(1, cache_files)
        if "stats" in self.info:
            _repair_stats_json(self.root, self.info)

    @property
    def complete(self) -> bool:
        """False while the job that writes it has episodes to add (see the module doc)."""
        return bool(self.info["complete"])

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-feature min/max/mean/std/count of the committed episodes (info.json's; stats.json
        for datasets written before info.json carried them)."""
        if "stats" in self.info:
            return _stats_from_json(self.info["stats"], self.root / INFO_PATH)
        return _load_stats(self.root)

    @classmethod
    def open(cls, root: str | os.PathLike) -> EpisodeDataset:
        return cls(root)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Episode]:
        for position in range(len(self)):
            yield self[position]

    def __repr__(self) -> str:
        return (f"EpisodeDataset({str(self.root)!r}, episodes={len(self)}, frames={self.info['total_frames']}, "
                f"fps={self.info['fps']}, {'video' if self.video else 'png'})")

    def __getitem__(self, position: int) -> Episode:
        if not isinstance(position, (int, np.integer)):
            raise TypeError(f"episodes are indexed by int, got {type(position).__name__}")
        if not -len(self) <= position < len(self):
            raise EpisodeIndexError(f"{self.root}: episode index {position} out of range; "
                                    f"the dataset has {len(self)} episodes")
        position = int(position) % len(self)
        row = self._rows[position]
        file_key = (row["data/chunk_index"], row["data/file_index"])
        table, file_frames = self._load_file(file_key)
        data_path = self.root / DATA_PATH.format(chunk_index=file_key[0], file_index=file_key[1])
        start = row["dataset_from_index"] - self._file_first_index[file_key]
        length = row["length"]
        rows = table.slice(start, length)
        where = f"{data_path}, episode {position}"
        _check_frame_rows(rows, position, length, where)
        arrays = {}
        for field_name, key in ARRAY_FEATURES.items():
            if key in self.info["features"]:
                arrays[field_name] = _from_fixed_size_list(rows.column(key), self.info["features"][key]["shape"])
        arrays["action"] = arrays["action"][:-1]  # the last frame's action is padding
        if file_frames is None:
            frames = _decode_pngs(rows.column(IMAGE_KEY), self.info["features"][IMAGE_KEY]["shape"], where)
        else:
            first_frame = round(row[f"videos/{IMAGE_KEY}/from_timestamp"] * self.info["fps"])
            frames = file_frames[first_frame:first_frame + length].copy()
            if frames.shape[0] != length:
                raise DatasetError(f"{where}: video holds {frames.shape[0]} frames for this episode, expected {length}")
        try:
            episode = Episode(
                task=row["task_name"],
                instruction=row["tasks"][0],
                embodiment=row["embodiment"],
                frames=frames,
                success=row["success"],
                scene=json.loads(row["scene_json"]),
                seed=row["seed"],
                source=row["source"],
                tier=row["tier"],
                perturbation=row["perturbation"],
                parent=row["parent"],
                metadata=json.loads(row["metadata_json"]),
                **arrays,
            )
            return episode.validate()
        except (EpisodeError, ValueError, TypeError) as error:
            raise DatasetError(f"{where}: the stored values do not make a valid Episode ({error})") from None

    def _load_file(self, file_key: tuple[int, int]) -> tuple[pa.Table, np.ndarray | None]:
        if file_key in self._cache:
            self._cache.move_to_end(file_key)
            return self._cache[file_key]
        chunk_index, file_index = file_key
        data_path = self.root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
        try:
            table = pq.read_table(data_path)
        except (pa.ArrowException, OSError, ValueError) as error:
            raise DatasetError(f"{data_path}: could not read the parquet file ({error})") from None
        frames = None
        if self.video:
            video_path = self.root / VIDEO_PATH.format(video_key=IMAGE_KEY, chunk_index=chunk_index,
                                                       file_index=file_index)
            try:
                frames = read_video(video_path)
            except OSError as error:
                raise DatasetError(f"{video_path}: could not decode the video ({error})") from None
            expected_shape = (table.num_rows, *self.info["features"][IMAGE_KEY]["shape"])
            if frames.shape != expected_shape:
                raise DatasetError(f"{video_path}: decoded frames of shape {frames.shape}, expected {expected_shape} "
                                   f"(one frame per row of {data_path.name})")
        self._cache[file_key] = (table, frames)
        while len(self._cache) > self._cache_files:
            self._cache.popitem(last=False)
        return table, frames


def read_episodes(root: str | os.PathLike) -> list[Episode]:
    """Every episode of the dataset at ``root``, in order."""
    return list(EpisodeDataset(root))


def partial_path(root: str | os.PathLike) -> Path:
    """Where a multi-batch job builds the dataset it will swap in at ``root``: ``ROOT.partial``."""
    root = Path(root)
    return root.with_name(root.name + PARTIAL_SUFFIX)


def target_of(partial: Path) -> Path:
    """The ``--out`` a partial dataset will become (``partial`` itself if it is not one)."""
    return partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX)) if partial.name.endswith(PARTIAL_SUFFIX) else partial


def job_command_line(job: dict[str, Any] | None, out: Path) -> str:
    """The ``psi-gym`` command that made (and resumes) a dataset, from its stored ``job``."""
    if not isinstance(job, dict) or not job.get("command"):
        return f"the command that wrote it, with --out {out}"
    words = ["psi-gym", str(job["command"])]
    for key, value in (job.get("params") or {}).items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, ",".join(map(str, value))]
        else:
            words += [flag, str(value)]
    return " ".join(words + ["--out", str(out)])


def _incomplete_message(root: Path, info: dict[str, Any]) -> str:
    out = target_of(root)
    return (f"{root} is an unfinished dataset: {info['total_episodes']} of {info['planned_episodes']} planned "
            f"episodes are committed. Rerun `{job_command_line(info.get('job'), out)}` to resume it (the episodes "
            f"are made again from their seeds; nothing committed is lost), or open it with allow_incomplete=True "
            f"to read the committed ones")


def _unfinished_hint(root: Path) -> str:
    partial = partial_path(root)
    info_path = partial / INFO_PATH
    if not info_path.is_file():
        return ""
    try:
        info = json.loads(info_path.read_text())
        done, planned = info["total_episodes"], info["planned_episodes"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"; {partial} holds an unfinished one: rerun the command that writes it to resume"
    return (f"; {partial} holds an unfinished one ({done} of {planned} episodes): rerun "
            f"`{job_command_line(info.get('job'), root)}` to finish it")


def _repair_stats_json(root: Path, info: dict[str, Any]) -> None:
    """Rewrite stats.json from info.json's stats if a writer died between the two, when no writer
    holds the dataset (else that writer will); silently skipped where the dataset is read-only."""
    path = root / STATS_PATH
    try:
        if json.loads(path.read_text()) == info["stats"]:
            return
    except (OSError, ValueError):
        pass
    if is_locked(root):
        return
    try:
        with hold_lock(root):
            fresh = _load_info(root)  # what is committed now, under the lock
            if "stats" in fresh:
                _write_stats_json(root, fresh["stats"])
    except (TargetLockedError, OSError):
        pass


def _load_info(root: Path) -> dict[str, Any]:
    path = root / INFO_PATH
    if not path.is_file():
        raise DatasetError(f"{path}: missing; a LeRobot {CODEBASE_VERSION} dataset keeps its metadata there")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: expected a JSON object, could not parse it ({error})") from None
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(info).__name__}")
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise DatasetError(f"{path}: codebase_version is {info.get('codebase_version')!r}, expected "
                           f"{CODEBASE_VERSION!r} (older LeRobot layouts are not supported)")
    missing = [key for key in _INFO_KEYS if key not in info]
    if missing:
        raise DatasetError(f"{path}: missing keys {missing}")
    if info["data_path"] != DATA_PATH:
        raise DatasetError(f"{path}: data_path is {info['data_path']!r}, expected {DATA_PATH!r}")
    features = info["features"]
    if not isinstance(features, dict) or not all(isinstance(spec, dict) and "dtype" in spec and "shape" in spec
                                                 for spec in features.values()):
        raise DatasetError(f"{path}: features must map each name to {{dtype, shape, names}}")
    required = [IMAGE_KEY, *INDEX_FEATURES, *(ARRAY_FEATURES[name] for name in REQUIRED_ARRAY_FIELDS)]
    missing = [key for key in required if key not in features]
    if missing:
        raise DatasetError(f"{path}: features lack {missing}; psi_gym datasets always have {required}")
    for key, spec in features.items():
        shape = spec["shape"]
        if not isinstance(shape, list) or not shape or not all(isinstance(n, int) and n > 0 for n in shape):
            raise DatasetError(f"{path}: feature {key} has shape {shape!r}, expected a list of positive ints")
        expected_dtypes = _expected_dtypes(key)
        if expected_dtypes and spec["dtype"] not in expected_dtypes:
            raise DatasetError(f"{path}: feature {key} has dtype {spec['dtype']!r}, "
                               f"expected {' or '.join(expected_dtypes)}")
    image_shape = features[IMAGE_KEY]["shape"]
    if len(image_shape) != 3 or image_shape[2] != 3:
        raise DatasetError(f"{path}: {IMAGE_KEY} has shape {image_shape}, expected [height, width, 3]")
    for key in ("fps", "total_episodes", "total_frames", "total_tasks", "chunks_size"):
        if not isinstance(info[key], int) or info[key] < 0:
            raise DatasetError(f"{path}: {key} must be a non-negative int, got {info[key]!r}")
    # psi_gym's own keys; a dataset written before they existed is complete
    info.setdefault("complete", True)
    info.setdefault("planned_episodes", info["total_episodes"])
    info.setdefault("job", None)
    if not isinstance(info["complete"], bool):
        raise DatasetError(f"{path}: complete must be true or false, got {info['complete']!r}")
    if not isinstance(info["planned_episodes"], int) or info["planned_episodes"] < 0:
        raise DatasetError(f"{path}: planned_episodes must be a non-negative int, got {info['planned_episodes']!r}")
    if "stats" in info and not isinstance(info["stats"], dict):
        raise DatasetError(f"{path}: stats must map each feature to {{min, max, mean, std, count}}")
    return info


def _read_parquet(path: Path, what: str) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"{path}: missing; expected {what}")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DatasetError(f"{path}: expected a parquet file with {what}, could not read it ({error})") from None


def _check_columns(table_schema: pa.Schema, expected: pa.Schema, path: Path) -> None:
    for field in expected:
        if field.name not in table_schema.names:
            raise DatasetError(f"{path}: missing column {field.name!r} (expected {field.type})")
        found = table_schema.field(field.name).type
        if found != field.type:
            raise DatasetError(f"{path}: column {field.name!r} has type {found}, expected {field.type}")


def _load_tasks(root: Path, total_tasks: int) -> list[str]:
    path = root / TASKS_PATH
    table = _read_parquet(path, "columns task, task_index")
    _check_columns(table.schema, pa.schema([("task", pa.string()), ("task_index", pa.int64())]), path)
    task_index = table.column("task_index").to_numpy()
    # rows past total_tasks belong to an append that never committed
    if table.num_rows < total_tasks or not np.array_equal(task_index[:total_tasks], np.arange(total_tasks)):
        raise DatasetError(f"{path}: expected task_index 0..{total_tasks - 1} in order (info.json total_tasks), "
                           f"got {task_index.tolist()[:10]}{'...' if len(task_index) > 10 else ''}")
    return table.column("task").to_pylist()[:total_tasks]


def _load_episodes_table(root: Path, info: dict[str, Any], video: bool) -> pa.Table:
    path = root / EPISODES_PATH
    table = _read_parquet(path, "one row per episode")
    _check_columns(table.schema, _episodes_schema(video), path)
    total = info["total_episodes"]
    if table.num_rows < total:
        raise DatasetError(f"{path}: {table.num_rows} episode rows, expected {total} (info.json total_episodes)")
    # rows past total_episodes belong to an append that never committed
    table = table.slice(0, total).select(_episodes_schema(video).names)
    episode_index = table.column("episode_index").to_numpy()
    if not np.array_equal(episode_index, np.arange(total)):
        raise DatasetError(f"{path}: episode_index must run 0..{total - 1} in order, got {episode_index.tolist()[:10]}")
    start = table.column("dataset_from_index").to_numpy()
    stop = table.column("dataset_to_index").to_numpy()
    length = table.column("length").to_numpy()
    expected_start = np.concatenate([[0], stop[:-1]])
    if (length < 1).any() or not np.array_equal(stop - start, length) or not np.array_equal(start, expected_start):
        raise DatasetError(f"{path}: lengths don't match: each episode needs length >= 1 == dataset_to_index - "
                           f"dataset_from_index, with episodes back to back from index 0")
    if int(stop[-1] if total else 0) != info["total_frames"]:
        raise DatasetError(f"{path}: episodes hold {int(stop[-1] if total else 0)} frames, but info.json "
                           f"total_frames is {info['total_frames']}")
    tasks_per_episode = table.column("tasks").to_pylist()
    if any(not tasks for tasks in tasks_per_episode):
        raise DatasetError(f"{path}: every episode needs one task in its tasks list")
    return table


def _expected_dtypes(key: str) -> tuple[str, ...]:
    """The dtypes a psi_gym feature may have in info.json; () for a feature psi_gym doesn't know."""
    if key == IMAGE_KEY:
        return ("image", "video")
    if key in ARRAY_FEATURES.values():
        return ("float32",)
    if key == PAD_KEY:
        return ("bool",)
    if key in INDEX_FEATURES:
        return (INDEX_FEATURES[key]["dtype"],)
    return ()


def _data_schema(features: dict[str, Any]) -> pa.Schema:
    """The arrow type each known feature has in the data files (video frames live in mp4s instead)."""
    fields = []
    for key, spec in features.items():
        if spec["dtype"] == "video" or not _expected_dtypes(key):
            continue
        if spec["dtype"] == "image":
            arrow_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        else:
            arrow_type = pa.from_numpy_dtype(np.dtype(spec["dtype"]))
            for size in reversed(_list_shape(spec["shape"])):
                arrow_type = pa.list_(arrow_type, size)
        fields.append((key, arrow_type))
    return pa.schema(fields)


def _check_data_files(root: Path, info: dict[str, Any], rows: list[dict[str, Any]], video: bool
                      ) -> dict[tuple[int, int], int]:
    """Check each referenced data file's footer; return each file's first global frame index."""
    expected_schema = _data_schema(info["features"])
    files: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        files.setdefault((row["data/chunk_index"], row["data/file_index"]), []).append(row)
    first_index = {}
    for (chunk_index, file_index), file_rows in files.items():
        path = root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
        if not path.is_file():
            raise DatasetError(f"{path}: missing; episodes {[r['episode_index'] for r in file_rows][:10]} live there")
        try:
            metadata = pq.read_metadata(path)
            schema = metadata.schema.to_arrow_schema()
        except (pa.ArrowException, OSError, ValueError) as error:
            raise DatasetError(f"{path}: expected a parquet data file, could not read it ({error})") from None
        _check_columns(schema, expected_schema, path)
        expected_rows = sum(row["length"] for row in file_rows)
        contiguous = all(a["dataset_to_index"] == b["dataset_from_index"] for a, b in zip(file_rows, file_rows[1:]))
        if metadata.num_rows != expected_rows or not contiguous:
            episodes = f"{file_rows[0]['episode_index']}..{file_rows[-1]['episode_index']}"
            raise DatasetError(f"{path}: holds {metadata.num_rows} rows, expected {expected_rows} for episodes "
                               f"{episodes} (lengths don't match)")
        if video:
            video_path = root / VIDEO_PATH.format(video_key=IMAGE_KEY, chunk_index=chunk_index, file_index=file_index)
            if not video_path.is_file():
                raise DatasetError(f"{video_path}: missing; expected the frames of {path.name} as mp4")
        first_index[(chunk_index, file_index)] = file_rows[0]["dataset_from_index"]
    return first_index


def _check_frame_rows(rows: pa.Table, position: int, length: int, where: str) -> None:
    episode_index = rows.column("episode_index").to_numpy()
    frame_index = rows.column("frame_index").to_numpy()
    if rows.num_rows != length or (episode_index != position).any():
        raise DatasetError(f"{where}: rows of the file don't match the episodes table: expected {length} rows "
                           f"of episode_index {position}, got episode_index {sorted(set(episode_index.tolist()))}")
    if not np.array_equal(frame_index, np.arange(length)):
        raise DatasetError(f"{where}: frame_index must run 0..{length - 1}, got {frame_index.tolist()[:10]}")
    if PAD_KEY in rows.column_names:  # datasets written before the column was dropped
        is_pad = rows.column(PAD_KEY).to_numpy(zero_copy_only=False)
        if not is_pad[-1] or is_pad[:-1].any():
            raise DatasetError(f"{where}: {PAD_KEY} must be true on the last frame only")


def _from_fixed_size_list(column: pa.ChunkedArray, shape: list[int]) -> np.ndarray:
    values: pa.Array = column.combine_chunks()
    for _ in _list_shape(shape):
        values = values.flatten()
    return np.array(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(column), *shape)


def _decode_pngs(column: pa.ChunkedArray, shape: list[int], where: str) -> np.ndarray:
    png_bytes = column.combine_chunks().field("bytes").to_pylist()
    frames = np.empty((len(png_bytes), *shape), dtype=np.uint8)
    for frame_index, data in enumerate(png_bytes):
        if data is None:
            raise DatasetError(f"{where}, frame {frame_index}: no PNG bytes in {IMAGE_KEY}")
        try:
            with Image.open(io.BytesIO(data)) as image:
                frame = np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise DatasetError(f"{where}, frame {frame_index}: PNG does not decode ({error})") from None
        if frame.shape != tuple(shape):
            raise DatasetError(f"{where}, frame {frame_index}: image is {frame.shape}, expected {tuple(shape)}")
        frames[frame_index] = frame
    return frames
