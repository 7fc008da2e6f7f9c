"""Crash-safe writes: a file or a whole folder is replaced so that a crash leaves the old or the
new version, never a mix and never nothing; one writer per target at a time.

These are the primitives every writer of psi_gym uses (the dataset writer and its resumable
jobs, both trainers' checkpoints and models, and the flywheel buffer to come): a new writer of
files that must survive a crash uses them rather than its own ``.tmp`` names.

Files: `write_file_atomic` writes ``<path>.tmp-<token>`` (a name no other writer uses), fsyncs it,
renames it over ``path`` and fsyncs the folder.

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
With ``overwrite=False``, step 3 is a rename that fails if ``final`` exists (``renameat2`` with
``RENAME_NOREPLACE``): a complete folder another writer put there meanwhile is never replaced.

One writer per target: `hold_lock` takes an exclusive ``flock`` on ``.<name>.lock`` beside the
target (the file stays; the lock dies with the process, ``kill -9`` included). It does not wait:
a second writer gets `TargetLockedError` at once, naming the process that holds the lock. A
writer holds the lock of what it swaps for as long as it works on it (a whole ``collect`` job, a
whole training run); a loader that finds a swap half done repairs it only when it can take the
lock (else a writer is in the middle of it, and the loader waits a moment for the swap to end).
The lock is re-entrant within a thread, so a job that holds it can call the writers below.

A temporary folder or file left by a writer that was killed is not removed here (it may belong
to a live writer); the dataset writer cleans its own under its lock.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

OLD_MARK = ".old-"
TMP_MARK = ".tmp-"
LOCK_SUFFIX = ".lock"


class TargetLockedError(FileExistsError):
    """Another process is writing the same target (it holds the target's lock)."""


def fsync_file(path: str | os.PathLike) -> None:
    """Make a file's contents durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
            if not os.path.islink(path):
                fsync_file(path)
    for folder in reversed(folders):
        fsync_dir(folder)


def _token() -> str:
    return secrets.token_hex(4)


def write_file_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """``write(file)`` into ``<path>.tmp-<token>``, fsync, rename over ``path``, fsync the folder;
    the temporary file never outlives an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f"{path.name}{TMP_MARK}{_token()}")
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
    """A new, empty folder ``<final>.tmp-<token>`` next to ``final`` (parents created), unique to
    this writer."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}{TMP_MARK}{_token()}")
    tmp.mkdir()
    return tmp


# ------------------------------------------------------------------------------- locking
def lock_path(final: str | os.PathLike) -> Path:
    """The lock file of ``final``: ``.<name>.lock`` beside it."""
    final = Path(final)
    return final.parent / f".{final.name}{LOCK_SUFFIX}"


_held: dict[str, tuple[int, int, int]] = {}  # lock file -> (fd, depth, thread id)
_held_guard = threading.Lock()


@contextmanager
def hold_lock(final: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of ``final`` for the block (see the module doc); yields the lock file.

    Raises:
        TargetLockedError: another process (or thread) holds it.
        OSError: the lock file cannot be created (the folder is not writable ...).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(final)
    key = os.path.realpath(path)
    me = threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            fd, depth, owner = entry
            if owner != me:
                raise TargetLockedError(f"{final} is being written by another thread of this process")
            _held[key] = (fd, depth + 1, owner)
            reentered = True
        else:
            reentered = False
    if not reentered:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TargetLockedError(
                    f"{final} is being written by another process{holder} (it holds {path}); wait for it to "
                    "finish, or write somewhere else") from None
            raise
        # write first, then cut: a reader never sees an empty file where a stale pid was
        stamp = f"{os.getpid()}\n".encode()
        os.pwrite(fd, stamp, 0)
        os.ftruncate(fd, len(stamp))
        with _held_guard:
            _held[key] = (fd, 1, me)
    try:
        yield path
    finally:
        with _held_guard:
            fd, depth, owner = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1, owner)
            else:
                del _held[key]
                os.close(fd)  # releases the flock


def _read_holder(fd: int, wait: float = 0.5) -> str:
    """`` (pid N)`` of the lock's holder, or "" if it cannot be read.

    A holder writes its pid just after it takes the lock; a reader that loses the race by
    microseconds finds the file still empty, so it looks again for up to ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            pid = os.pread(fd, 32, 0).decode(errors="replace").split("\n")[0].strip()
        except OSError:
            return ""
        if pid.isdigit():
            return f" (pid {pid})"
        if time.monotonic() >= deadline:
            return ""
        time.sleep(0.01)


def is_locked(final: str | os.PathLike) -> bool:
    """True while another process holds ``final``'s lock (False if this one does or nobody)."""
    path = lock_path(final)
    if os.path.realpath(path) in _held or not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


# ------------------------------------------------------------------------------- renames
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # an old libc: fall back to check-then-rename under the lock
    _renameat2 = None


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst``; `FileExistsError` if ``dst`` exists (atomically, where the kernel
    and file system support ``RENAME_NOREPLACE``; else checked just before, under the writer's lock)."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(dst))
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(src), None, str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


# ------------------------------------------------------------------------------- folder swaps
def _old_copies(final: Path) -> list[Path]:
    prefix = final.name + OLD_MARK
    if not final.parent.is_dir():
        return []
    return [p for p in final.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]


def recover_dir(final: str | os.PathLike, *, wait_s: float = 5.0) -> bool:
    """Finish what a crashed `replace_dir` left: if ``final`` is missing, rename its newest
    ``<final>.old-*`` back to it; delete the other ``.old-*`` copies. Returns True if it restored.

    Runs under ``final``'s lock. If another process holds it, that writer is between its two
    renames: nothing is touched, and this waits up to ``wait_s`` for ``final`` to reappear."""
    final = Path(final)
    if not _old_copies(final):
        return False
    try:
        with hold_lock(final):
            return _recover(final)
    except TargetLockedError:
        deadline = time.monotonic() + wait_s
        while not final.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return False
    except OSError:  # no lock file can be made here (read-only folder): repair as well as we can
        return _recover(final)


def _recover(final: Path) -> bool:
    olds = _old_copies(final)
    restored = False
    if olds and not os.path.lexists(final):
        newest = max(olds, key=lambda p: p.stat().st_mtime_ns)
        os.rename(newest, final)
        fsync_dir(final.parent)
        olds.remove(newest)
        restored = True
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
    return restored


def replace_dir(tmp: str | os.PathLike, final: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Swap the complete folder ``tmp`` (beside ``final``, same file system) into place at ``final``,
    holding ``final``'s lock.

    See the module doc for the steps and what a crash at each leaves. An ordinary error in the
    second rename puts the old folder back before it propagates. With ``overwrite=False`` an
    existing ``final`` (other than an empty folder) is never replaced: `FileExistsError`, and
    ``tmp`` stays where it is.
    """
    tmp, final = Path(tmp), Path(final)
    if not tmp.is_dir():
        raise FileNotFoundError(f"replace_dir: no folder at {tmp} to move into {final}")
    with hold_lock(final):
        _recover(final)
        fsync_tree(tmp)
        if not overwrite:
            if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
                final.rmdir()  # an empty folder holds nothing to lose
            try:
                rename_noreplace(tmp, final)
            except FileExistsError:
                raise FileExistsError(f"{final} appeared while this writer worked (another writer finished "
                                      "first); it was left as it is") from None
            fsync_dir(final.parent)
            return final
        old = None
        if final.exists() or final.is_symlink():
            old = final.with_name(f"{final.name}{OLD_MARK}{_token()}")
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
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return final


@contextmanager
def replacing_dir(final: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Build the new version of ``final`` in the yielded temporary folder; when the block ends
    without error it replaces ``final`` (`replace_dir`), on error it is deleted and ``final`` is
    left as it was::

        with replacing_dir(out / "final") as tmp:
            model.save_pretrained(tmp)
    """
    tmp = temp_dir_beside(final)
    try:
        yield tmp
        replace_dir(tmp, final, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = [
    "TargetLockedError",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "hold_lock",
    "is_locked",
    "lock_path",
    "recover_dir",
    "rename_noreplace",
    "replace_dir",
    "replacing_dir",
    "temp_dir_beside",
    "write_bytes_atomic",
    "write_file_atomic",
]
