"""The env's demo set: the demonstrations its episodes start from, each turned into an episode start.

A *demo* is a robot episode made by `psi_gym.retarget.pipeline.retarget_episode` from a human
demonstration: its ``metadata`` holds the retargeted ``reference`` (T+1, 22), the human's object
trajectory ``human_object_pose`` (T+1, 7) and ``human_success``; ``frames[0]`` is the robot's
real first camera frame and ``state[0]`` its start joints. A human demo dataset works too: its
episodes are retargeted when first drawn (the MuJoCo replay takes a moment) and kept.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from psi_gym.data.assets import AssetKind, load_asset
from psi_gym.data.episode import Episode, EpisodeError
from psi_gym.data.lerobot import EpisodeDataset
from psi_gym.rewards.base import EpisodeContext
from psi_gym.sim.scene import SceneParams

DEFAULT_DEMOS = "default"
DEMO_SET_ASSET = AssetKind(
    name="demo set",
    default_folder="demos-default",
    marker="meta/info.json",
    missing_default=(
        "the default demo set is not at {path}. Make it with `psi-gym demos --num 48 --seed 2026 --out "
        "runs/demos-2026 && psi-gym retarget --demos runs/demos-2026 --out {path}`."
    ),
    missing_folder=(
        "no demo set folder at {path}: expected a LeRobot v3 dataset of human demos (`psi-gym demos`) "
        "or of their retargets (`psi-gym retarget`)"
    ),
    # info.json is the dataset's commit point; a rewritten dataset has new files throughout
    files=("meta/*.json", "meta/*.parquet", "meta/episodes/*/*.parquet", "data/*/*.parquet", "videos/*/*/*.mp4"),
)
"""How ``"default"`` and folders name a demo set (`psi_gym.data.assets`)."""


def default_demos_path() -> Path:
    """``psi_gym/assets/demos-default``: 48 retargeted demos (16 per task) shipped with the package."""
    return DEMO_SET_ASSET.default_path


@dataclass(frozen=True)
class DemoStart:
    """An episode's start: what it is about, and the robot's first frame and joints."""

    context: EpisodeContext
    first_frame: np.ndarray  # (H, W, 3) uint8
    start_state: np.ndarray  # (22,) float32


def demo_start(episode: Episode, demo_id: str, demo_index: int = -1) -> DemoStart:
    """A retargeted robot episode (or a human one, retargeted here) -> its `DemoStart`.

    Raises:
        ValueError: a robot episode that is not a retarget (no ``metadata["reference"]``).
    """
    if episode.embodiment == "human":
        from psi_gym.retarget.pipeline import retarget_episode

        episode = retarget_episode(episode)
    metadata = episode.metadata
    missing = [key for key in ("reference", "human_object_pose") if key not in metadata]
    if missing:
        raise ValueError(
            f"demo {demo_id!r} is a robot episode without metadata {missing}: the env needs human demos or their "
            "retargets (`psi-gym retarget --demos HUMAN --out DIR`, or psi_gym.retarget.pipeline.retarget_episode)"
        )
    reference = np.asarray(metadata["reference"], dtype=np.float32)
    object_pose = np.asarray(metadata["human_object_pose"], dtype=np.float32)
    if reference.ndim != 2 or reference.shape[0] < 2 or reference.shape[1] != episode.state.shape[1]:
        raise ValueError(f"demo {demo_id!r}: reference must be (T+1, {episode.state.shape[1]}) with T >= 1, got {reference.shape}")
    if object_pose.shape != (reference.shape[0], 7):
        raise ValueError(f"demo {demo_id!r}: human_object_pose must be ({reference.shape[0]}, 7), got {object_pose.shape}")
    context = EpisodeContext(
        task=episode.task,
        instruction=episode.instruction,
        scene=SceneParams.from_dict(episode.scene),
        reference=reference,
        human_object_pose=object_pose,
        demo_id=demo_id,
        demo_index=demo_index,
    )
    return DemoStart(context=context, first_frame=episode.frames[0].copy(), start_state=episode.state[0].astype(np.float32))


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """Square ``size`` px frame (bilinear), for demos recorded at another size than the world model's."""
    if frame.shape[:2] == (size, size):
        return frame
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR), dtype=np.uint8)


class DemoSet:
    """The demos one env draws from: a dataset folder, ``"default"``, or a list of `Episode`.

    Args:
        source: ``"default"`` (the shipped set), a LeRobot dataset folder of retargeted (or human)
            demos, an `EpisodeDataset`, one `Episode` or a sequence of them.
        successful_only: the seeded draw picks only demos whose human demonstration succeeded
            (``metadata["human_success"]``; for human datasets, ``success``). An explicit index
            or id may still pick any demo.

    Raises:
        ValueError: no demo to draw (empty, or none successful); a dataset error names the file.
    """

    def __init__(self, source: Any = DEFAULT_DEMOS, successful_only: bool = True) -> None:
        if isinstance(source, (str, os.PathLike)):
            source = EpisodeDataset(DEMO_SET_ASSET.resolve(source))
        if isinstance(source, Episode):
            source = [source]
        self._dataset: EpisodeDataset | None = None
        self._episodes: list[Episode] | None = None
        if isinstance(source, EpisodeDataset):
            self._dataset = source
            self.name = source.root.name
            rows = source.episodes_table.select(["embodiment", "success", "parent", "metadata_json"]).to_pylist()
            human = [row["embodiment"] == "human" for row in rows]
            metadata = [json.loads(row["metadata_json"]) for row in rows]
            succeeded = [row["success"] if is_human else bool(meta.get("human_success", True))
                         for row, is_human, meta in zip(rows, human, metadata)]
            ids = [(meta.get("id") if is_human else row["parent"]) or f"{self.name}:{index}"
                   for index, (row, is_human, meta) in enumerate(zip(rows, human, metadata))]
        elif isinstance(source, Sequence) and all(isinstance(e, Episode) for e in source):
            self._episodes = list(source)
            self.name = "episodes"
            succeeded = [e.success if e.embodiment == "human" else bool(e.metadata.get("human_success", True))
                         for e in self._episodes]
            ids = [(e.metadata.get("id") if e.embodiment == "human" else e.parent) or f"episode:{index}"
                   for index, e in enumerate(self._episodes)]
        else:
            raise TypeError(
                "demos must be 'default', a dataset folder, an EpisodeDataset, an Episode or a list of Episodes, "
                f"got {type(source).__name__}"
            )
        self.ids: list[str] = ids
        self._index_of: dict[str, int] = {}
        for index, demo_id in enumerate(ids):
            self._index_of.setdefault(demo_id, index)
        self.eligible = np.array([i for i, ok in enumerate(succeeded) if ok or not successful_only], dtype=np.int64)
        if len(ids) == 0:
            raise ValueError(f"the demo set {self.name!r} holds no episodes")
        if len(self.eligible) == 0:
            raise ValueError(f"no demo of {self.name!r} comes from a successful human demonstration; "
                             "pass successful_demos_only=False to draw from all of them")
        self._starts: dict[int, DemoStart] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"DemoSet({self.name!r}, demos={len(self)}, drawn from={len(self.eligible)})"

    def draw(self, rng: np.random.Generator) -> DemoStart:
        """A demo chosen with ``rng`` among the eligible ones."""
        return self[int(self.eligible[rng.integers(len(self.eligible))])]

    def __getitem__(self, index: int) -> DemoStart:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"demo index must be an int, got {type(index).__name__}")
        if not 0 <= index < len(self):
            raise ValueError(f"unknown demo index {index}: {self.name!r} has demos 0..{len(self) - 1}")
        index = int(index)
        with self._lock:
            if index not in self._starts:
                episode = self._dataset[index] if self._dataset is not None else self._episodes[index]
                try:
                    self._starts[index] = demo_start(episode, self.ids[index], index)
                except EpisodeError as error:
                    raise ValueError(f"demo {self.ids[index]!r} of {self.name!r}: {error}") from None
            return self._starts[index]

    def find(self, demo_id: str) -> DemoStart | None:
        """The demo with this id, or None."""
        index = self._index_of.get(demo_id)
        return None if index is None else self[index]


def load_demo_set(source: Any = DEFAULT_DEMOS, successful_only: bool = True) -> DemoSet:
    """A `DemoSet` of ``source``. Named ones (``"default"``, a folder) load through the process asset
    cache of `psi_gym.data.assets` and are shared between envs (their episodes are decoded and, for
    human demos, retargeted once per process), until the dataset's files change; anything else
    (episodes, an `EpisodeDataset`) makes a new set."""
    if not isinstance(source, (str, os.PathLike)):
        return DemoSet(source, successful_only)
    return load_asset(DEMO_SET_ASSET, source, lambda folder: DemoSet(folder, successful_only), successful_only)


def select_demo(demos: DemoSet, choice: Any, rng: np.random.Generator, successful_only: bool = True) -> DemoStart:
    """What ``reset(options={"demo": choice})`` picks.

    ``None``: a seeded draw from ``demos``; an int: that index; a str: a demo id of ``demos``,
    else a dataset folder to draw from; an `Episode`: that demo; an `EpisodeDataset`: a draw from it.

    Raises:
        ValueError: an unknown index or id (the message says what exists).
    """
    if choice is None:
        return demos.draw(rng)
    if isinstance(choice, (int, np.integer)) and not isinstance(choice, (bool, np.bool_)):
        return demos[int(choice)]
    if isinstance(choice, Episode):
        return demo_start(choice, choice.parent or str(choice.metadata.get("id", "")) or "episode")
    if isinstance(choice, EpisodeDataset):
        return DemoSet(choice, successful_only).draw(rng)
    if isinstance(choice, (str, os.PathLike)):
        found = demos.find(str(choice)) if isinstance(choice, str) else None
        if found is not None:
            return found
        if Path(choice).expanduser().is_dir():
            return load_demo_set(choice, successful_only).draw(rng)
        examples = ", ".join(repr(i) for i in demos.ids[:3])
        raise ValueError(f"unknown demo {str(choice)!r}: neither a demo id of {demos.name!r} (e.g. {examples}) "
                         "nor a dataset folder")
    raise TypeError(f"options['demo'] must be an index, a demo id, an Episode or a dataset folder, got {type(choice).__name__}")
