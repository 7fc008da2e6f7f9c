"""Crash-safe writes: a file or a whole folder is replaced so that a crash leaves the old or the
new version, never a mix and never nothing.

Files: `write_file_atomic` writes ``<path>.tmp``, fsyncs it and renames it over ``path``.

Folders (a model, a checkpoint, a dataset): build the new version in a fresh folder beside the
target (`temp_dir_beside`, or the `replacing_dir` context manager), then `replace_dir` swaps it in:

1. fsync every file and folder of the new version;
2. rename the old ``final`` to a unique ``<final>.old-<token>`` beside it;
3. rename the new version to ``final``, fsync the parent folder;
4. delete the old copy.

At every instant the old or the new complete folder exists: at ``final``, or (between 2 and 3)
as ``<final>.old-*``, which `recover_dir` renames back when it finds ``final`` missing. Writers
call it before they swap, loaders (`psi_gym.data.assets`, `EpisodeDataset`) when ``final`` is
missing; ``.old-*`` leftovers beside a present ``final`` (a crash between 3 and 4) are deleted.

One writer per folder at a time: nothing here stops two processes from swapping the same folder.
A temporary folder left by a writer that was killed is not removed (it may belong to a live one).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

OLD_MARK = ".old-"
TMP_MARK = ".tmp-"


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file under ``root``, then every folder (deepest first), ``root`` last."""
    folders = []
    for folder, _, files in os.walk(root):
        folders.append(folder)
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for folder in reversed(folders):
        fsync_dir(folder)


def write_file_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """``write(file)`` into ``<path>.tmp``, fsync, rename over ``path``; the tmp file never outlives an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + ".tmp")
    try:
        with open(tmp_path, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """`write_file_atomic` of ``data``."""
    return write_file_atomic(path, lambda file: file.write(data))


def temp_dir_beside(final: str | os.PathLike) -> Path:
    """A new, empty folder ``<final>.tmp-<token>`` next to ``final`` (parents created)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}{TMP_MARK}{secrets.token_hex(4)}")
    tmp.mkdir()
    return tmp


def _old_copies(final: Path) -> list[Path]:
    prefix = final.name + OLD_MARK
    if not final.parent.is_dir():
        return []
    return [p for p in final.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]


def recover_dir(final: str | os.PathLike) -> bool:
    """Finish what a crashed `replace_dir` left: if ``final`` is missing, rename its newest
    ``<final>.old-*`` back to it; delete the other ``.old-*`` copies. Returns True if it restored."""
    final = Path(final)
    olds = _old_copies(final)
    restored = False
    if olds and not final.exists():
        newest = max(olds, key=lambda p: p.stat().st_mtime_ns)
        os.rename(newest, final)
        fsync_dir(final.parent)
        olds.remove(newest)
        restored = True
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
    return restored


def replace_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Swap the complete folder ``tmp`` (beside ``final``, same file system) into place at ``final``.

    See the module doc for the steps and what a crash at each leaves. An ordinary error in the
    second rename puts the old folder back before it propagates.
    """
    tmp, final = Path(tmp), Path(final)
    if not tmp.is_dir():
        raise FileNotFoundError(f"replace_dir: no folder at {tmp} to move into {final}")
    recover_dir(final)
    fsync_tree(tmp)
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f"{final.name}{OLD_MARK}{secrets.token_hex(4)}")
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        if old is not None and not final.exists():
            os.rename(old, final)
        raise
    fsync_dir(final.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    return final


@contextmanager
def replacing_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Build the new version of ``final`` in the yielded temporary folder; when the block ends
    without error it replaces ``final`` (`replace_dir`), on error it is deleted and ``final`` is
    left as it was::

        with replacing_dir(out / "final") as tmp:
            model.save_pretrained(tmp)
    """
    tmp = temp_dir_beside(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


__all__ = [
    "fsync_dir",
    "fsync_tree",
    "recover_dir",
    "replace_dir",
    "replacing_dir",
    "temp_dir_beside",
    "write_bytes_atomic",
    "write_file_atomic",
]
