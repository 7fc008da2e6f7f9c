"""Produce episodes in parallel worker processes and stream them into a LeRobot dataset as a
resumable job.

A job that makes many episodes (``psi-gym demos``, ``collect``, ``retarget``) must survive being
killed: hours of work are not redone, and what it leaves never looks complete. `DatasetJobWriter`
does it with the primitives of `psi_gym.data.atomic`:

1. `DatasetJobWriter.open` (at start-up, before any work) takes the lock of ``--out``
   (``.OUT.lock`` beside it: a second writer fails at once), refuses an ``--out`` it must not
   touch (a file, a folder that is no dataset, an existing dataset without ``overwrite``), and
   looks for ``OUT.partial``: the unfinished dataset of an earlier run. If that run had the same
   `DatasetJob` (command and the arguments its episodes are reproducible from), the job resumes
   after the episodes it committed; if not, it refuses (or, with ``overwrite``, starts over).
2. `DatasetJobWriter.write` commits the episodes into ``OUT.partial`` every ``commit_every``
   episodes (`append_episodes`' commit: info.json last, ``complete: false``); a kill loses at
   most the batch in progress, and ``OUT.partial`` never loads as complete.
3. When the last episode is in, info.json is committed with ``complete: true`` and the folder is
   swapped into ``OUT`` (`replace_dir`): with ``overwrite``, the old complete dataset stays at
   ``OUT`` until this moment; without it, the final rename refuses to replace a dataset that
   appeared meanwhile.

Episodes must be reproducible from their index (``make(seed, index)``): a resumed job makes
episodes ``committed .. planned - 1`` and the dataset is the one an uninterrupted run writes.
The flywheel buffer builds on the same writer.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from psi_gym.data.atomic import fsync_dir, fsync_tree, hold_lock, rename_noreplace, replace_dir, temp_dir_beside
from psi_gym.data.episode import Episode, EpisodeError
from psi_gym.data.lerobot import (
    DEFAULT_CHUNKS_SIZE,
    DEFAULT_DATA_FILES_SIZE_IN_MB,
    INFO_PATH,
    DatasetError,
    EpisodeDataset,
    append_locked,
    build_dataset,
    check_can_write,
    job_command_line,
    new_info,
    partial_path,
    remove_stale_temporaries,
)

DEFAULT_COMMIT_EVERY = 256


def produce(make: Callable[..., Episode], jobs: list[tuple[Any, ...]], workers: int = 1, desc: str = "",
            initial: int = 0, total: int | None = None) -> Iterator[Episode]:
    """`make(*job)` for each job, in order, in `workers` processes (spawned: each opens its own
    GL context), with a progress bar on stderr (starting at ``initial`` of ``total`` for a
    resumed job)."""
    total = len(jobs) + initial if total is None else total
    bar = tqdm(total=total, initial=initial, desc=desc, file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 10.0, dynamic_ncols=True)
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


@dataclass
class DatasetJob:
    """What a dataset's episodes are made from, stored in its info.json (``job``).

    A rerun resumes an unfinished dataset only if its job matches: same ``command`` and
    ``params``, except ``count_param`` (the number of episodes), which may change as long as the
    episodes already committed are still wanted."""

    command: str
    """the subcommand, e.g. ``"collect"``."""
    params: dict[str, Any]
    """JSON values of every argument the episodes depend on (seed, tasks, image size, video ...),
    the number of episodes included; how the work is spread (workers) does not belong here."""
    planned_episodes: int
    count_param: str | None = None
    """the key of ``params`` that holds the number of episodes (may change on resume)."""
    checks: dict[str, Any] = field(default_factory=dict)
    """JSON values that must match too but are no arguments (a fingerprint of the input dataset)."""

    def to_json(self) -> dict[str, Any]:
        job = {"command": self.command, "params": self.params, "count_param": self.count_param}
        if self.checks:
            job["checks"] = self.checks
        return json.loads(json.dumps(job))

    def mismatch(self, stored: Any) -> str:
        """'' if a dataset whose info.json holds ``stored`` as its job can be resumed by this job,
        else what differs."""
        if not isinstance(stored, dict):
            return "it records no job"
        mine = self.to_json()
        if stored.get("command") != mine["command"]:
            return f"it was made by {stored.get('command')!r}, not {mine['command']!r}"
        theirs = stored.get("params") or {}
        ignore = {self.count_param}
        keys = sorted((set(theirs) | set(mine["params"])) - ignore)
        differences = [f"{key} {theirs.get(key)!r} (now {mine['params'].get(key)!r})" for key in keys
                       if theirs.get(key) != mine["params"].get(key)]
        their_checks, my_checks = stored.get("checks") or {}, mine.get("checks") or {}
        differences += [f"another {key}" for key in sorted(set(their_checks) | set(my_checks))
                        if their_checks.get(key) != my_checks.get(key)]
        return "it has " + ", ".join(differences) if differences else ""


@dataclass
class DatasetJobWriter:
    """Write the episodes of a `DatasetJob` into the dataset at ``root``, resumably (see the module
    doc)::

        writer = DatasetJobWriter(out, job, overwrite=False)
        with writer:                     # open(): start-up checks, lock, resume point
            jobs = [(seed, i) for i in range(writer.committed, job.planned_episodes)]
            writer.write(produce(make_rollout, jobs))
    """

    root: Path
    job: DatasetJob
    overwrite: bool = False
    video: bool = False
    commit_every: int = DEFAULT_COMMIT_EVERY
    fps: int = 10
    robot_type: str | None = None
    committed: int = 0
    """episodes already committed (by an earlier run, when resuming), set by `open`."""
    resumed_from: int = 0
    """episodes an earlier, interrupted run had committed, set by `open` (0: a fresh start)."""
    _lock: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {self.commit_every}")
        if self.job.planned_episodes < 1:
            raise ValueError(f"a job needs at least one episode, got {self.job.planned_episodes}")

    @property
    def partial(self) -> Path:
        """``ROOT.partial``, where the unfinished dataset lives."""
        return partial_path(self.root)

    # ------------------------------------------------------------------------- start-up
    def open(self) -> int:
        """Lock ``root``, check it, find the resume point; returns `committed`.

        Raises:
            TargetLockedError: another process writes ``root``.
            FileExistsError: ``root`` is a file / a folder that is no dataset / holds a dataset and
                ``overwrite`` is off; ``ROOT.partial`` holds another job's episodes (without
                ``overwrite``).
            OSError: ``root``'s folder is not writable.
        """
        lock = hold_lock(self.root)
        lock.__enter__()
        try:
            self._check_root()
            remove_stale_temporaries(self.root)
            remove_stale_temporaries(self.partial)
            self.committed = self.resumed_from = self._resume_point()
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        self._lock = lock
        return self.committed

    def close(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)

    def __enter__(self) -> DatasetJobWriter:
        if self._lock is None:
            self.open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _check_root(self) -> None:
        root = self.root
        if root.is_dir() and (root / INFO_PATH).is_file() and not self.overwrite:
            try:
                existing = EpisodeDataset(root)
                same = not self.job.mismatch(existing.info.get("job")) and len(existing) == self.job.planned_episodes
                what = f"a complete dataset of {len(existing)} episodes" + (" made by this very job" if same else "")
            except DatasetError:
                what = "a dataset that does not load"
            raise FileExistsError(f"{root} already holds {what}; pass --overwrite (overwrite=True) to replace it "
                                  "(it stays in place until the new one is complete) or choose another --out")
        check_can_write(root, self.overwrite)
        # the folder must take new entries: the lock file was made there; so must a folder be
        probe = temp_dir_beside(self.partial)
        probe.rmdir()

    def _resume_point(self) -> int:
        partial = self.partial
        if not partial.exists():
            return 0
        try:
            dataset = EpisodeDataset(partial, allow_incomplete=True)
        except DatasetError as error:
            if not self.overwrite:
                raise FileExistsError(f"{partial} holds an unfinished dataset that does not load ({error}); pass "
                                      "--overwrite (overwrite=True) to discard it and start over") from None
            shutil.rmtree(partial)
            return 0
        problem = self.job.mismatch(dataset.info.get("job"))
        if not problem and dataset.video != self.video:
            problem = f"it stores frames as {'mp4' if dataset.video else 'PNG'}"
        if not problem and len(dataset) > self.job.planned_episodes:
            problem = f"it already holds {len(dataset)} episodes, more than the {self.job.planned_episodes} planned now"
        if problem:
            if not self.overwrite:
                raise FileExistsError(
                    f"{partial} holds the unfinished dataset of another job ({problem}); rerun "
                    f"`{job_command_line(dataset.info.get('job'), self.root)}` to finish it, or pass --overwrite "
                    "(overwrite=True) to discard it")
            shutil.rmtree(partial)
            return 0
        return len(dataset)

    # ---------------------------------------------------------------------------- writing
    def write(self, episodes: Iterable[Episode]) -> Path:
        """Commit ``episodes`` (those of indices `committed` .. ``planned - 1``, in order) every
        ``commit_every``, then mark the dataset complete and swap it into ``root``; returns ``root``."""
        if self._lock is None:
            raise RuntimeError("DatasetJobWriter.write needs open() (or a with block) first")
        pending: list[Episode] = []
        for episode in episodes:
            pending.append(episode)
            if len(pending) >= self.commit_every:
                self._commit(pending)
                pending = []
        if pending:
            self._commit(pending)
        if self.committed != self.job.planned_episodes:
            raise EpisodeError(f"the job made {self.committed} episodes, {self.job.planned_episodes} were planned")
        return self._finish()

    def _updates(self) -> dict[str, Any]:
        return {"planned_episodes": self.job.planned_episodes, "job": self.job.to_json()}

    def _commit(self, episodes: list[Episode]) -> None:
        if self.committed + len(episodes) > self.job.planned_episodes:
            raise EpisodeError(f"more episodes than the {self.job.planned_episodes} planned")
        if self.partial.exists():
            append_locked(self.partial, episodes, complete=False, info_updates=self._updates())
        else:
            info = new_info(episodes[0], self.fps, self.robot_type, self.video, DEFAULT_CHUNKS_SIZE,
                            DEFAULT_DATA_FILES_SIZE_IN_MB, self.job.planned_episodes, self.job.to_json())
            tmp = temp_dir_beside(self.partial)
            try:
                build_dataset(tmp, info, episodes, complete=False)
                fsync_tree(tmp)
                rename_noreplace(tmp, self.partial)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(self.partial.parent)
        self.committed += len(episodes)

    def _finish(self) -> Path:
        append_locked(self.partial, [], complete=True, info_updates=self._updates())
        if self.overwrite:  # replaces datasets only (without overwrite the rename itself refuses)
            check_can_write(self.root, self.overwrite)
        replace_dir(self.partial, self.root, overwrite=self.overwrite)
        return self.root


__all__ = ["DEFAULT_COMMIT_EVERY", "DatasetJob", "DatasetJobWriter", "produce"]
