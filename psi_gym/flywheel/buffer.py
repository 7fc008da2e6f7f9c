"""The flywheel buffer: every trajectory the flywheel keeps, with where it came from, on disk.

A TorchRL `TensorDictReplayBuffer` on a `LazyMemmapStorage` (one row per frame, trajectories laid
end to end) sampled in trajectory slices by a `SliceSampler`; beside it a JSON table of the
trajectories and their provenance. Layout::

    ROOT/buffer.json                  the commit point: capacity, committed rows, one record per
                                      trajectory (`TrajectoryRecord`: source, demo id, iteration,
                                      scores, scene ...)
    ROOT/storage/*.memmap, meta.json  the memory-mapped rows (TensorDict.memmap layout)
    ROOT/storage/storage_metadata.json  TorchRL's checkpointer file (its ``len``), derived from
                                      buffer.json
    .ROOT.lock                        beside ROOT: one writer at a time (`hold_lock`)

Rows (``T+1`` per trajectory of ``T`` steps; ``S`` the image size)::

    pixels             (S, S, 3) uint8   frame t (W0's prediction, the robot's camera, the human's)
    state              (22,) float32     joints at t (a human demo's: its retargeted joints)
    action             (22,) float32     absolute joint targets of step t (the last row repeats
                                         the one before: the frame after the last step has none)
    action_mask        () bool           False on that last row
    object_pose        (7,) float32      object position + quaternion at t
    reference          (22,) float32     the retargeted reference row t (its last row repeated)
    human_object_pose  (7,) float32      the human demo's object pose at t (same)
    tactile            (5,) float32      fingertip touch (N) of a human demo; zeros elsewhere
    tactile_mask       () bool           True where tactile is a label (human demos): the
                                         report's masked modality
    trajectory         () int64          the trajectory's id (the SliceSampler's ``traj_key``)
    step               () int64          t

Crash safety, with the project's primitives (`psi_gym.data.atomic`): rows are appended after the
committed ones and never overwrite them (a full buffer refuses new trajectories instead of
wrapping round); `commit` fsyncs the row files, then replaces ``buffer.json`` atomically
(`write_file_atomic`): that rename is the commit. A process killed at any moment leaves every
committed trajectory intact; rows past the committed count are ignored, and the next writer
writes over them. The first commit builds the whole folder beside ``ROOT`` and renames it into
place, so ``ROOT`` is either absent or a loadable buffer. A writer holds ``ROOT``'s lock from
`open` to `close` (a second writer fails at once, naming the first); readers (`read`) take no lock
and see exactly the committed trajectories, also while a writer appends.

A trajectory goes in as an `psi_gym.data.episode.Episode` and comes back out as one (`episode`),
or as a LeRobot v3.0 dataset (`export_lerobot`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psi_gym.data.atomic import (
    fsync_dir,
    fsync_file,
    fsync_tree,
    hold_lock,
    rename_noreplace,
    temp_dir_beside,
    write_bytes_atomic,
)
from psi_gym.data.episode import Episode

SOURCES = ("human_demo", "retargeted", "refined_w0", "robot_episode", "scene_variation")
"""Where a trajectory came from:

* ``human_demo``: a human demonstration, aligned to the robot's joints (its retargeted reference
  as state and joint targets), with the human's frames and touch;
* ``retargeted``: the raw retarget of a human demo (residual 0) rolled out in W0;
* ``refined_w0``: a retarget refined inside W0 (W0's frames);
* ``scene_variation``: the same, refined from a varied start inside W0 (`psi_gym.flywheel.variation`);
* ``robot_episode``: R2 run on the robot (the simulator in its robot role): true frames, success
  or failure.
"""
BUFFER_FILE = "buffer.json"
STORAGE_DIR = "storage"
TORCHRL_METADATA = "storage_metadata.json"  # TorchRL's TensorStorageCheckpointer reads its "len"
TRAJECTORY_KEY = "trajectory"
FORMAT_VERSION = 1
DEFAULT_CAPACITY = 200_000  # rows: ~2.5 GB of 64 px frames at most (the memmap files are sparse)
NUM_JOINTS = 22
NUM_FINGERTIPS = 5
# Episode source of an exported trajectory, by buffer source (`psi_gym.data.episode.SOURCES`).
EPISODE_SOURCE = {"human_demo": "demo", "retargeted": "generated", "refined_w0": "generated",
                  "robot_episode": "rollout", "scene_variation": "generated"}
_LARGE_METADATA = ("reference", "human_object_pose", "policy_actions")  # stored as rows, not in JSON


class BufferError(ValueError):
    """A buffer on disk that does not load, or an operation it refuses (full, wrong shapes)."""


@dataclass
class TrajectoryRecord:
    """One trajectory of the buffer: where its rows are and where it came from."""

    trajectory_id: int
    start: int
    """first row in the storage."""
    length: int
    """rows (``T + 1`` frames)."""
    source: str
    """one of `SOURCES`."""
    demo_id: str
    """the human demo it derives from."""
    iteration: int
    """the flywheel iteration that made it (0: before the first)."""
    task: str
    instruction: str
    embodiment: str
    success: bool
    """what its own source says: W0's verdict (W0 rollouts), the robot's outcome (robot episodes),
    the human's (human demos). Never the judge's."""
    scores: dict[str, float] = field(default_factory=dict)
    """the filters' scores (W0 return, consistency, demo quality ...)."""
    scene: dict[str, Any] = field(default_factory=dict)
    tier: str = ""
    seed: int = 0
    parent: str = ""
    perturbation: str = ""
    reference_length: int = 0
    """rows of the retargeted reference (T_demo + 1); the stored column repeats its last row past it."""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrajectoryRecord:
        return cls(**values)


@dataclass
class Provenance:
    """What the caller says about a trajectory it adds (the rest comes from its `Episode`)."""

    source: str
    demo_id: str
    iteration: int
    scores: dict[str, float] = field(default_factory=dict)
    perturbation: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")


def _padded(rows: np.ndarray | None, length: int, width: int, name: str) -> np.ndarray:
    """(R, width) -> (length, width): the last row repeated past R (R <= length)."""
    if rows is None:
        return np.zeros((length, width), np.float32)
    rows = np.asarray(rows, np.float32).reshape(len(rows), -1)
    if rows.shape[1] != width or not 1 <= len(rows) <= length:
        raise BufferError(f"{name} must be (1..{length}, {width}), got {rows.shape}")
    return np.concatenate([rows, np.repeat(rows[-1:], length - len(rows), axis=0)])


def episode_rows(episode: Episode, trajectory_id: int) -> tuple[dict[str, np.ndarray], int]:
    """An episode as the buffer's rows (see the module doc) and the length of its reference."""
    episode.validate()
    length = episode.num_steps + 1
    if episode.state.shape[1] != NUM_JOINTS or episode.action.shape[1] != NUM_JOINTS:
        raise BufferError(f"the buffer holds trajectories in the robot's {NUM_JOINTS} joints, got state/action widths "
                          f"{episode.state.shape[1]}/{episode.action.shape[1]}")
    if episode.num_steps < 1:
        raise BufferError("a trajectory needs at least one step")
    reference = episode.metadata.get("reference")
    reference = None if reference is None else np.asarray(reference, np.float32)
    human_pose = episode.metadata.get("human_object_pose")
    action = np.concatenate([episode.action, episode.action[-1:]]).astype(np.float32)
    tactile = episode.tactile
    rows = {
        "pixels": episode.frames,
        "state": episode.state.astype(np.float32),
        "action": action,
        "action_mask": np.arange(length) < length - 1,
        "object_pose": episode.object_pose.astype(np.float32),
        "reference": _padded(reference, length, NUM_JOINTS, "metadata['reference']"),
        "human_object_pose": _padded(None if human_pose is None else np.asarray(human_pose), length, 7,
                                     "metadata['human_object_pose']"),
        "tactile": np.zeros((length, NUM_FINGERTIPS), np.float32) if tactile is None else tactile.astype(np.float32),
        "tactile_mask": np.full(length, tactile is not None),
        TRAJECTORY_KEY: np.full(length, trajectory_id, np.int64),
        "step": np.arange(length, dtype=np.int64),
    }
    return rows, (0 if reference is None else len(reference))


def _tensordict(rows: dict[str, np.ndarray]):
    from tensordict import TensorDict

    length = len(rows["step"])
    return TensorDict({key: torch.as_tensor(np.ascontiguousarray(value)) for key, value in rows.items()},
                      batch_size=[length])


@contextmanager
def _quiet_torchrl() -> Iterator[None]:
    """TorchRL logs the storage's creation at INFO on stdout, where ``--json`` prints its summary."""
    logger = logging.getLogger("torchrl")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _slice_sampler(slice_len: int):
    from torchrl.data import SliceSampler

    return SliceSampler(slice_len=slice_len, traj_key=TRAJECTORY_KEY, strict_length=False)


class FlywheelBuffer:
    """The buffer at ``root`` (see the module doc). Use `open` to write, `read` to read::

        with FlywheelBuffer.open("runs/flywheel/buffer") as buffer:
            buffer.add(episode, Provenance("refined_w0", demo_id, iteration=1, scores={...}))
            buffer.commit()
        view = FlywheelBuffer.read("runs/flywheel/buffer")
        view.episode(0), view.sample(batch_size=32, slice_len=8), view.export_lerobot(out)
    """

    def __init__(self, root: Path, writable: bool, capacity: int, records: list[TrajectoryRecord],
                 storage: Any, lock: Any = None) -> None:
        self.root = root
        self.writable = writable
        self.capacity = int(capacity)
        self.records = records
        self._storage = storage  # a TorchRL storage holding exactly the committed rows (None: empty)
        self._lock = lock
        self._pending: list[tuple[dict[str, np.ndarray], TrajectoryRecord]] = []
        self._replay: Any = None

    # ------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root: str | os.PathLike, capacity: int = DEFAULT_CAPACITY) -> FlywheelBuffer:
        """The writer of the buffer at ``root`` (made at the first `commit` if absent). Holds
        ``root``'s lock until `close`; rows a killed writer left past the commit are dropped.

        Raises:
            TargetLockedError: another process writes this buffer.
            BufferError: ``root`` holds no loadable buffer.
        """
        root = Path(root)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1 (rows), got {capacity!r}")
        lock = hold_lock(root)
        lock.__enter__()
        try:
            if not root.exists():
                return cls(root, True, capacity, [], None, lock)
            info = _load_info(root)
            records = [TrajectoryRecord.from_json(r) for r in info["trajectories"]]
            committed = int(info["committed_rows"])
            # TorchRL's own "len" follows the commit point (a killed writer may have left it behind)
            _write_torchrl_metadata(root, committed)
            storage = _writer_storage(root, int(info["capacity"]), committed)
            buffer = cls(root, True, int(info["capacity"]), records, storage, lock)
            buffer._check_rows()
            return buffer
        except BaseException:
            lock.__exit__(None, None, None)
            raise

    @classmethod
    def read(cls, root: str | os.PathLike) -> FlywheelBuffer:
        """A read-only view of the trajectories committed at ``root`` (no lock: a writer may go on).

        Raises:
            FileNotFoundError: no buffer at ``root``. BufferError: one that does not load.
        """
        root = Path(root)
        if not (root / BUFFER_FILE).is_file():
            raise FileNotFoundError(f"no flywheel buffer at {root} (no {BUFFER_FILE})")
        info = _load_info(root)
        records = [TrajectoryRecord.from_json(r) for r in info["trajectories"]]
        committed = int(info["committed_rows"])
        storage = None
        if committed:
            from tensordict import TensorDict
            from torchrl.data import TensorStorage

            try:
                rows = TensorDict.load_memmap(root / STORAGE_DIR)
            except Exception as error:  # tensordict raises several kinds
                raise BufferError(f"{root / STORAGE_DIR} does not load: {error}") from None
            storage = TensorStorage(rows[:committed])  # exactly the committed rows, zero copy
        buffer = cls(root, False, int(info["capacity"]), records, storage)
        buffer._check_rows()
        return buffer

    def close(self) -> None:
        """Drop uncommitted trajectories and release the lock."""
        self._pending.clear()
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)

    def __enter__(self) -> FlywheelBuffer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _check_rows(self) -> None:
        """The records tile the committed rows and the rows carry their trajectories' ids."""
        position = 0
        for record in self.records:
            if record.start != position or record.length < 2:
                raise BufferError(f"{self.root / BUFFER_FILE}: trajectory {record.trajectory_id} starts at row "
                                  f"{record.start}, expected {position}")
            position += record.length
        if position != self.num_rows or position > self.capacity:
            raise BufferError(f"{self.root / BUFFER_FILE}: records cover {position} rows, the storage holds "
                              f"{self.num_rows} (capacity {self.capacity})")
        if self._storage is not None and position:
            ids = self._storage[:position][TRAJECTORY_KEY].numpy()
            expected = np.concatenate([np.full(r.length, r.trajectory_id) for r in self.records])
            if not np.array_equal(ids, expected):
                raise BufferError(f"{self.root / STORAGE_DIR}: the stored rows do not match {BUFFER_FILE}")

    # ---------------------------------------------------------------------------- contents
    def __len__(self) -> int:
        """Committed trajectories."""
        return len(self.records)

    @property
    def num_rows(self) -> int:
        return 0 if self._storage is None else len(self._storage)

    def __repr__(self) -> str:
        counts = {s: sum(r.source == s for r in self.records) for s in SOURCES}
        return (f"FlywheelBuffer({str(self.root)!r}, trajectories={len(self)}, rows={self.num_rows}/{self.capacity}, "
                f"{', '.join(f'{k}={v}' for k, v in counts.items() if v)})")

    def select(self, sources: Sequence[str] | None = None, iterations: Sequence[int] | None = None,
               embodiment: str | None = None) -> list[TrajectoryRecord]:
        """Committed records of these sources / iterations / embodiment (None: any)."""
        return [r for r in self.records if (sources is None or r.source in sources)
                and (iterations is None or r.iteration in iterations)
                and (embodiment is None or r.embodiment == embodiment)]

    def rows(self, record: TrajectoryRecord) -> dict[str, np.ndarray]:
        """A committed trajectory's rows as numpy arrays."""
        if self._storage is None:
            raise BufferError("the buffer is empty")
        data = self._storage[record.start: record.start + record.length]
        return {key: data[key].numpy().copy() for key in data.keys() if key != "index"}

    def episode(self, index: int | TrajectoryRecord) -> Episode:
        """Committed trajectory ``index`` (or ``record``) as an `Episode`: its rows, scene and
        instruction; ``metadata`` holds ``reference`` and ``human_object_pose`` (so it can start an
        env again, or be cloned by behaviour cloning) and ``flywheel`` (its provenance)."""
        record = self.records[index] if isinstance(index, (int, np.integer)) else index
        rows = self.rows(record)
        reference_length = record.reference_length or record.length
        metadata = dict(record.metadata)
        if record.reference_length:
            metadata["reference"] = rows["reference"][:reference_length].tolist()
            metadata["human_object_pose"] = rows["human_object_pose"][:reference_length].tolist()
        metadata["flywheel"] = {"trajectory_id": record.trajectory_id, "source": record.source,
                                "demo_id": record.demo_id, "iteration": record.iteration, "scores": dict(record.scores)}
        human = record.embodiment == "human"
        return Episode(
            task=record.task, instruction=record.instruction, embodiment=record.embodiment,
            frames=rows["pixels"], state=rows["state"], action=rows["action"][:-1], object_pose=rows["object_pose"],
            success=bool(record.success), scene=dict(record.scene), seed=int(record.seed),
            source=EPISODE_SOURCE[record.source], tier=record.tier,
            tactile=rows["tactile"] if human and rows["tactile_mask"].all() else None,
            perturbation=record.perturbation, parent=record.parent, metadata=metadata,
        ).validate()

    def episodes(self, records: Sequence[TrajectoryRecord] | None = None) -> Iterator[Episode]:
        for record in self.records if records is None else records:
            yield self.episode(record)

    # ---------------------------------------------------------------------------- sampling
    def replay_buffer(self, slice_len: int = 8, batch_size: int = 32, generator: torch.Generator | None = None):
        """A TorchRL `TensorDictReplayBuffer` over the committed rows that samples ``batch_size``
        rows as ``batch_size // slice_len`` trajectory slices (`SliceSampler` on ``trajectory``)."""
        from torchrl.data import TensorDictReplayBuffer

        if self._storage is None:
            raise BufferError("the buffer is empty: nothing to sample")
        if self.writable and self._pending:
            raise BufferError("commit() the added trajectories before sampling")
        return TensorDictReplayBuffer(storage=self._storage, sampler=_slice_sampler(slice_len), batch_size=batch_size,
                                      generator=generator)

    def sample(self, batch_size: int, slice_len: int, generator: torch.Generator | None = None):
        """``batch_size`` rows: ``batch_size // slice_len`` slices of ``slice_len`` consecutive rows
        of one trajectory each (shorter at a trajectory's end), as a TensorDict."""
        return self.replay_buffer(slice_len, batch_size, generator).sample()

    # ----------------------------------------------------------------------------- writing
    def add(self, episode: Episode, provenance: Provenance, tactile: np.ndarray | None = None) -> TrajectoryRecord:
        """Queue a trajectory (an `Episode` of the robot's 22 joints) for the next `commit`.
        ``tactile`` (T+1, 5): a touch label for a robot-domain trajectory that carries one (a human
        demo converted by W0), stored with its mask; a human episode's own ``tactile`` is used otherwise."""
        if not self.writable or self._lock is None:
            raise BufferError("this buffer is read-only (FlywheelBuffer.read) or closed; use FlywheelBuffer.open")
        ids = [r.trajectory_id for r in self.records] + [r.trajectory_id for _, r in self._pending]
        trajectory_id = max(ids, default=-1) + 1
        rows, reference_length = episode_rows(episode, trajectory_id)
        if tactile is not None:
            tactile = np.asarray(tactile, np.float32)
            if tactile.shape != rows["tactile"].shape:
                raise BufferError(f"tactile must be {rows['tactile'].shape}, got {tactile.shape}")
            rows["tactile"], rows["tactile_mask"] = tactile, np.ones(len(tactile), bool)
        if self._pending or self.records:
            first = self._pending[0][0]["pixels"] if self._pending else None
            shape = tuple(first.shape[1:]) if first is not None else tuple(self._storage[0]["pixels"].shape)
            if tuple(rows["pixels"].shape[1:]) != shape:
                raise BufferError(f"frames of {rows['pixels'].shape[1:]} in a buffer of {shape} frames")
        start = self.num_rows + sum(r.length for _, r in self._pending)
        metadata = {k: v for k, v in episode.metadata.items() if k not in _LARGE_METADATA and k != "flywheel"}
        record = TrajectoryRecord(
            trajectory_id=trajectory_id, start=start, length=len(rows["step"]), source=provenance.source,
            demo_id=provenance.demo_id, iteration=int(provenance.iteration), task=episode.task,
            instruction=episode.instruction, embodiment=episode.embodiment, success=bool(episode.success),
            scores={k: float(v) for k, v in provenance.scores.items()}, scene=dict(episode.scene), tier=episode.tier,
            seed=int(episode.seed), parent=episode.parent, perturbation=provenance.perturbation or episode.perturbation,
            reference_length=reference_length, metadata=json.loads(json.dumps(metadata)),
        )
        if start + record.length > self.capacity:
            raise BufferError(f"the buffer is full: {start} of {self.capacity} rows used, a trajectory of "
                              f"{record.length} does not fit (open a new buffer with a larger capacity)")
        self._pending.append((rows, record))
        return record

    def commit(self) -> int:
        """Write the queued trajectories durably (see the module doc); returns how many."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, []
        if self._storage is None:
            self._create(pending)
        else:
            replay = self._writer_replay()
            for rows, _ in pending:
                replay.extend(_tensordict(rows))
            _fsync_rows(self.root)
            self.records.extend(record for _, record in pending)
            _write_info(self.root, self.capacity, self.records)
            _write_torchrl_metadata(self.root, self.num_rows)
        return len(pending)

    def extend(self, items: Sequence[tuple[Episode, Provenance]]) -> list[TrajectoryRecord]:
        """`add` each (episode, provenance), then `commit`."""
        records = [self.add(episode, provenance) for episode, provenance in items]
        self.commit()
        return records

    def truncate(self, num_trajectories: int) -> None:
        """Keep the first ``num_trajectories`` committed trajectories (a flywheel iteration that is
        run again starts from the buffer as the iteration before left it)."""
        if not self.writable or self._lock is None:
            raise BufferError("truncate needs the writer (FlywheelBuffer.open)")
        if not 0 <= num_trajectories <= len(self.records):
            raise ValueError(f"num_trajectories must be in [0, {len(self.records)}], got {num_trajectories}")
        if num_trajectories == len(self.records) or self._storage is None:
            return
        self._pending.clear()
        self.records = self.records[:num_trajectories]
        rows = sum(r.length for r in self.records)
        _write_info(self.root, self.capacity, self.records)
        _write_torchrl_metadata(self.root, rows)
        self._storage = _writer_storage(self.root, self.capacity, rows)
        self._replay = None

    def _writer_replay(self):
        from torchrl.data import TensorDictReplayBuffer

        if self._replay is None:
            self._replay = TensorDictReplayBuffer(storage=self._storage, sampler=_slice_sampler(8))
            rows = len(self._storage)
            self._replay.writer.load_state_dict({"_cursor": rows, "_write_count": rows})  # append after the commit
        return self._replay

    def _create(self, pending: list[tuple[dict[str, np.ndarray], TrajectoryRecord]]) -> None:
        """The first commit: the whole buffer is built beside ``root`` and renamed into place."""
        from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer

        tmp = temp_dir_beside(self.root)
        try:
            storage = LazyMemmapStorage(self.capacity, scratch_dir=tmp / STORAGE_DIR, auto_cleanup=False)
            replay = TensorDictReplayBuffer(storage=storage, sampler=_slice_sampler(8))
            with _quiet_torchrl():
                for rows, _ in pending:
                    replay.extend(_tensordict(rows))
            del replay, storage
            records = [record for _, record in pending]
            _write_info(tmp, self.capacity, records)
            _write_torchrl_metadata(tmp, sum(r.length for r in records))
            fsync_tree(tmp)
            rename_noreplace(tmp, self.root)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.root.parent)
        self.records = records
        self._storage = _writer_storage(self.root, self.capacity, sum(r.length for r in records))
        self._replay = None

    # ------------------------------------------------------------------------------ export
    def export_lerobot(self, root: str | os.PathLike, records: Sequence[TrajectoryRecord] | None = None,
                       overwrite: bool = False, fps: int = 10) -> Path:
        """Write trajectories (default: all robot-embodiment ones) as a LeRobot v3.0 dataset at
        ``root`` (`psi_gym.data.lerobot.write_dataset`: crash-safe, one writer). One dataset holds
        one embodiment, as in LeRobot."""
        from psi_gym.data.lerobot import write_dataset

        records = self.select(embodiment="robot") if records is None else list(records)
        if not records:
            raise BufferError("no trajectories to export")
        embodiments = {r.embodiment for r in records}
        if len(embodiments) > 1:
            raise BufferError(f"a LeRobot dataset holds one embodiment; these trajectories have {sorted(embodiments)}")
        return write_dataset(root, list(self.episodes(records)), fps=fps, overwrite=overwrite,
                             job={"command": "flywheel-export", "buffer": str(self.root),
                                  "trajectories": [r.trajectory_id for r in records]})


# ---------------------------------------------------------------------------------- files
def _load_info(root: Path) -> dict[str, Any]:
    path = root / BUFFER_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BufferError(f"{root} is no flywheel buffer: {BUFFER_FILE} is missing") from None
    except (OSError, ValueError) as error:
        raise BufferError(f"{path} does not load: {error}") from None
    missing = {"version", "capacity", "committed_rows", "trajectories"} - set(info)
    if missing or info.get("version") != FORMAT_VERSION:
        raise BufferError(f"{path}: not a version-{FORMAT_VERSION} flywheel buffer (missing {sorted(missing)})")
    return info


def _write_info(root: Path, capacity: int, records: Sequence[TrajectoryRecord]) -> None:
    info = {"version": FORMAT_VERSION, "capacity": int(capacity), "committed_rows": int(sum(r.length for r in records)),
            "sources": list(SOURCES), "trajectories": [r.to_json() for r in records]}
    write_bytes_atomic(root / BUFFER_FILE, json.dumps(info).encode("utf-8"))


def _write_torchrl_metadata(root: Path, rows: int) -> None:
    if (root / STORAGE_DIR).is_dir():
        write_bytes_atomic(root / STORAGE_DIR / TORCHRL_METADATA,
                           json.dumps({"metadata": {}, "is_pytree": False, "len": int(rows)}).encode())


def _fsync_rows(root: Path) -> None:
    for path in (root / STORAGE_DIR).glob("*.memmap"):
        fsync_file(path)


def _writer_storage(root: Path, capacity: int, rows: int):
    """The LazyMemmapStorage on ``root/storage``, loaded in place (TorchRL's zero-copy path: its
    scratch_dir is the folder it loads), holding ``rows`` rows."""
    from torchrl.data import LazyMemmapStorage

    if not (root / STORAGE_DIR).is_dir():
        raise BufferError(f"{root / STORAGE_DIR} is missing")
    storage = LazyMemmapStorage(capacity, scratch_dir=root / STORAGE_DIR, auto_cleanup=False)
    try:
        storage.loads(root / STORAGE_DIR)
    except Exception as error:  # tensordict / torchrl raise several kinds
        raise BufferError(f"{root / STORAGE_DIR} does not load: {error}") from None
    if len(storage) != rows:
        raise BufferError(f"{root / STORAGE_DIR} holds {len(storage)} rows, {BUFFER_FILE} says {rows}")
    return storage


__all__ = ["BUFFER_FILE", "DEFAULT_CAPACITY", "SOURCES", "BufferError", "FlywheelBuffer", "Provenance",
           "TrajectoryRecord", "episode_rows"]
