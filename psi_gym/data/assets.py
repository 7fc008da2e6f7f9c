"""One resolver for what users name as an asset, and one process cache that notices new weights.

An asset is a folder: ``"default"`` names the one shipped in ``psi_gym/assets/``, anything else
is a folder path. Three kinds are loaded by name, each described once by an `AssetKind` next to
its loader:

=========================== ====================== ===========================================
kind                        shipped default        loader
=========================== ====================== ===========================================
world model (or a Wan       ``w0-default``         `psi_gym.world_model.loading.load_world_model`
diffusers folder)
object-state estimator      ``estimator-default``  `psi_gym.rewards.object_state.load_estimator`
demo set                    ``demos-default``      `psi_gym.envs.demo_set.load_demo_set`
=========================== ====================== ===========================================

`load_asset` resolves the name (`AssetKind.resolve`: a clear error saying how to make a missing
asset) and returns the object loaded from the folder, kept in a process cache keyed by the kind,
the resolved folder and the loader's options (device, dtype ...). Each entry remembers the
folder's *fingerprint*: name, ``mtime_ns`` and size of the files the kind lists (weights, configs,
dataset files). When new weights are saved into the same folder (a flywheel retraining W0 in the
same process), the fingerprint differs and the next load reads the folder again. `clear` empties
the cache.

Parts hand the loaded objects to each other; only the edges (``gym.make`` keywords, the CLI) load
by name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from psi_gym.data.atomic import recover_dir

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT = "default"

T = TypeVar("T")


@dataclass(frozen=True)
class AssetKind:
    """How one kind of asset is named, found and fingerprinted."""

    name: str
    """what it is, in messages: ``"world model"``."""
    default_folder: str
    """the shipped folder under ``psi_gym/assets/`` that ``"default"`` names (an absolute path works too)."""
    marker: str
    """a file every such folder holds (relative path): the shipped default counts as present only with it."""
    missing_default: str
    """error message when the shipped default is absent; ``{path}`` is filled in. Say how to make it."""
    missing_folder: str
    """error message when a named folder does not exist; ``{path}`` is filled in."""
    files: tuple[str, ...] = ("*.safetensors", "*.json")
    """globs, relative to the folder, of the files whose change means new contents."""

    @property
    def default_path(self) -> Path:
        return ASSETS_DIR / self.default_folder

    def resolve(self, name_or_path: str | os.PathLike) -> Path:
        """``"default"`` -> the shipped folder, else the folder at the path (``~`` expanded).

        Raises:
            FileNotFoundError: no such folder (for ``"default"``: how to make it).
        """
        if str(name_or_path) == DEFAULT:
            path = self.default_path
            if not (path / self.marker).is_file():
                recover_dir(path)
            if not (path / self.marker).is_file():
                raise FileNotFoundError(self.missing_default.format(path=path))
            return path
        path = Path(name_or_path).expanduser()
        if not path.exists():
            recover_dir(path)  # a writer killed while swapping new weights in left them beside it
        if not path.is_dir():
            raise FileNotFoundError(self.missing_folder.format(path=path))
        return path


def fingerprint(folder: str | os.PathLike, files: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    """``(relative name, mtime_ns, size)`` of each file under ``folder`` matching ``files``, sorted."""
    folder = Path(folder)
    stamps = set()
    for pattern in files:
        for path in folder.glob(pattern):
            try:
                stat = path.stat()
            except OSError:  # vanished while we looked: the next load sees the new state
                continue
            if path.is_file():
                stamps.add((path.relative_to(folder).as_posix(), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(stamps))


_cache: dict[tuple[Hashable, ...], tuple[Hashable, Any]] = {}
_lock = threading.RLock()


def cached(key: tuple[Hashable, ...], stamp: Hashable, load: Callable[[], T]) -> T:
    """The value cached under ``key`` if it was loaded with the same ``stamp``; else ``load()``,
    cached (replacing an older value under ``key``). For assets that are not folders (an untrained
    model named ``"random:..."``) pass a constant stamp."""
    with _lock:
        entry = _cache.get(key)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        value = load()
        _cache[key] = (stamp, value)
        return value


def load_asset(kind: AssetKind, name_or_path: str | os.PathLike, load: Callable[[Path], T], *options: Hashable) -> T:
    """``load(folder)`` for the folder ``name_or_path`` names (its real path, symlinks resolved),
    once per fingerprint of its files.

    ``options`` (device, dtype ...) are part of the cache key: the same folder loaded for another
    device is another entry.

    Raises:
        FileNotFoundError: see `AssetKind.resolve`.
    """
    path = kind.resolve(name_or_path)
    folder = os.path.realpath(path)
    # fingerprint before loading: files that change during the load make the next call load again
    stamp = fingerprint(folder, kind.files)
    return cached((kind.name, folder, *options), stamp, lambda: load(Path(folder)))


def clear() -> None:
    """Forget every cached asset (the objects stay alive wherever they are used)."""
    with _lock:
        _cache.clear()


__all__ = ["ASSETS_DIR", "DEFAULT", "AssetKind", "cached", "clear", "fingerprint", "load_asset"]
