"""Crash-safe folder swaps: a crash at any point of `replace_dir` leaves the old or the new
complete folder (after `recover_dir`), never a mix and never nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from psi_gym.data.atomic import recover_dir, replace_dir, replacing_dir, write_bytes_atomic


def make_version(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_text(version * 100)
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "config.json").write_text(f'{{"version": "{version}"}}')
    return folder


def version_of(folder: Path) -> str:
    weights = (folder / "weights.bin").read_text()
    config = (folder / "sub" / "config.json").read_text()
    assert weights == weights[0] * 100 and config == f'{{"version": "{weights[0]}"}}', "a mix of versions"
    return weights[0]


def siblings(final: Path) -> list[str]:
    # the lock file (.model.lock) stays beside the target: it is not a leftover
    return sorted(p.name for p in final.parent.iterdir() if p.name != final.name and not p.name.endswith(".lock"))


def test_replace_dir_swaps_and_leaves_nothing_behind(tmp_path):
    final = make_version(tmp_path / "model", "a")
    tmp = make_version(tmp_path / "model.tmp-1", "b")
    assert replace_dir(tmp, final) == final
    assert version_of(final) == "b" and siblings(final) == []
    replace_dir(make_version(tmp_path / "fresh.tmp-2", "c"), tmp_path / "fresh")  # no old one
    assert version_of(tmp_path / "fresh") == "c"


def test_replacing_dir_keeps_the_old_folder_on_error(tmp_path):
    final = make_version(tmp_path / "model", "a")
    with pytest.raises(RuntimeError):
        with replacing_dir(final) as tmp:
            make_version(tmp, "b")
            raise RuntimeError("training blew up")
    assert version_of(final) == "a" and siblings(final) == []
    with replacing_dir(final) as tmp:
        make_version(tmp, "b")
    assert version_of(final) == "b" and siblings(final) == []


CRASH = """
import os, shutil, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from psi_gym.data import atomic

final, tmp, point = Path({final!r}), Path({tmp!r}), {point!r}
renames = []
real_rename, real_rmtree = os.rename, shutil.rmtree

def rename(src, dst):
    renames.append(dst)
    if point == "between_renames" and len(renames) == 2:
        os._exit(9)  # killed: no cleanup runs
    real_rename(src, dst)

def rmtree(path, *args, **kwargs):
    if point == "before_delete":
        os._exit(9)
    real_rmtree(path, *args, **kwargs)

def fsync_tree(root):
    if point == "while_syncing":
        os._exit(9)

atomic.os.rename, atomic.shutil.rmtree = rename, rmtree
if point == "while_syncing":
    atomic.fsync_tree = fsync_tree
atomic.replace_dir(tmp, final)
"""


@pytest.mark.parametrize("point, expected", [("while_syncing", "a"), ("between_renames", "a"), ("before_delete", "b")])
def test_a_crash_leaves_old_or_new(tmp_path, point, expected):
    final = make_version(tmp_path / "model", "a")
    tmp = make_version(tmp_path / "model.tmp-x", "b")
    root = str(Path(__file__).resolve().parents[2])
    code = textwrap.dedent(CRASH).format(root=root, final=str(final), tmp=str(tmp), point=point)
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    if point == "between_renames":
        assert not final.exists() and any(".old-" in name for name in siblings(final))  # the window
    recover_dir(final)  # what the next writer or loader does first
    assert version_of(final) == expected
    assert not any(".old-" in name for name in siblings(final))


def test_an_error_in_the_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    from psi_gym.data import atomic

    final = make_version(tmp_path / "model", "a")
    tmp = make_version(tmp_path / "model.tmp-x", "b")
    real_rename = atomic.os.rename

    def rename(src, dst):
        if Path(src) == tmp:
            raise OSError("disk full")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="disk full"):
        replace_dir(tmp, final)
    assert version_of(final) == "a"


def test_write_bytes_atomic(tmp_path):
    path = write_bytes_atomic(tmp_path / "meta" / "info.json", b"{}")
    assert path.read_bytes() == b"{}" and sorted(p.name for p in path.parent.iterdir()) == ["info.json"]


def test_a_second_writer_names_the_holder_even_when_it_is_not_written_yet(tmp_path):
    """The holder takes the flock, then writes its pid: a loser in between still names it."""
    import fcntl
    import os
    import threading

    from psi_gym.data.atomic import TargetLockedError, hold_lock, lock_path

    final = tmp_path / "out"
    path = lock_path(final)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # locked, pid not yet written
        writer = threading.Timer(0.1, lambda: os.pwrite(fd, b"4242\n", 0))
        writer.start()
        with pytest.raises(TargetLockedError, match=r"being written by another process \(pid 4242\)"):
            with hold_lock(final):
                pass
        writer.join()
    finally:
        os.close(fd)
