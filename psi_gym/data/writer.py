"""Produce episodes in parallel worker processes and stream them into a LeRobot dataset."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from psi_gym.data.episode import Episode
from psi_gym.data.lerobot import append_episodes, write_dataset


def produce(make: Callable[..., Episode], jobs: list[tuple[Any, ...]], workers: int = 1, desc: str = "") -> Iterator[Episode]:
    """`make(*job)` for each job, in order, in `workers` processes (spawned: each opens its own
    GL context), with a progress bar on stderr."""
    bar = tqdm(total=len(jobs), desc=desc, file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 10.0, dynamic_ncols=True)
    try:
        if workers <= 1:
            for job in jobs:
                yield make(*job)
                bar.update(1)
            return
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            for episode in pool.imap(_Call(make), jobs, chunksize=4):
                yield episode
                bar.update(1)
    finally:
        bar.close()


class _Call:
    def __init__(self, make: Callable[..., Episode]):
        self.make = make

    def __call__(self, job: tuple[Any, ...]) -> Episode:
        return self.make(*job)


def write_stream(root: str | Path, episodes: Iterable[Episode], batch: int = 256, overwrite: bool = False,
                 on_episode: Callable[[Episode], None] | None = None) -> Path:
    """Write episodes as they come: the first batch creates the dataset, later ones append, so
    memory stays bounded and a crash keeps every batch already written."""
    root = Path(root)
    pending: list[Episode] = []
    created = False
    for episode in episodes:
        if on_episode is not None:
            on_episode(episode)
        pending.append(episode)
        if len(pending) >= batch:
            _flush(root, pending, created, overwrite)
            created, pending = True, []
    if pending or not created:
        if not pending:
            raise ValueError("no episodes to write")
        _flush(root, pending, created, overwrite)
    return root


def _flush(root: Path, episodes: list[Episode], created: bool, overwrite: bool) -> None:
    if created:
        append_episodes(root, episodes)
    else:
        write_dataset(root, episodes, overwrite=overwrite)
