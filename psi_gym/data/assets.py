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

Weights are read from safetensors only, never through pickle: `AssetKind.resolve` refuses a
folder whose ``*.safetensors.index.json`` (sharded weights) names a shard that is not a
``.safetensors`` file in the folder (a ``.bin`` shard would reach torch's unpickler, which runs
code), before any loader sees it. `safetensors_problem` checks a file's header against its size,
so a truncated or zero-byte file is found without loading it.

What the project's models write back is theirs alone: `ConfigWithoutOrigin` keeps diffusers'
record of the folder a model was loaded from (``_name_or_path``) out of the configs they save.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from psi_gym.data.atomic import recover_dir

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SAFETENSORS_SUFFIX = ".safetensors"
DEFAULT = "default"

T = TypeVar("T")


class UnsafeWeightsError(ValueError):
    """A folder names weights that are not safetensors (they would be unpickled: code would run)."""


def unsafe_weight_files(folder: str | os.PathLike) -> list[str]:
    """What in ``folder`` (and its ``transformer/``) would load weights other than safetensors: each
    shard an ``*.index.json`` names that is not a plain ``.safetensors`` file name."""
    folder = Path(folder)
    problems = []
    for index in [*folder.glob("*.index.json"), *folder.glob("transformer/*.index.json")]:
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = set(weight_map.values())
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            problems.append(f"{index.name} (not a readable index with a weight_map)")
            continue
        for shard in sorted(map(str, shards)):
            if not shard.endswith(SAFETENSORS_SUFFIX) or "/" in shard or "\\" in shard or shard.startswith("."):
                problems.append(f"{shard!r} (named by {index.name})")
    return problems


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """None if ``path`` is a whole safetensors file (its header parses and the tensors it describes
    end exactly at the end of the file), else what is wrong. Reads the header only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            if size < 8:
                return f"{path} is {size} bytes long (truncated)"
            header_size = int.from_bytes(file.read(8), "little")
            if header_size > size - 8:
                return f"{path}: its header claims {header_size} bytes but the file holds {size} (truncated)"
            header = json.loads(file.read(header_size))
    except OSError as error:
        return f"{path}: {error.strerror or error}"
    except (UnicodeDecodeError, ValueError):
        return f"{path}: the header is not JSON (not a safetensors file, or damaged)"
    if not isinstance(header, dict):
        return f"{path}: the header is not a JSON object"
    try:
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        return f"{path}: a tensor entry of the header has no data_offsets"
    if 8 + header_size + end != size:
        return f"{path} holds {size} bytes, its header describes {8 + header_size + end} (truncated or damaged)"
    return None


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
            UnsafeWeightsError: the folder names weights that are not safetensors.
        """
        if str(name_or_path) == DEFAULT:
            path = self.default_path
            if not (path / self.marker).is_file():
                recover_dir(path)
            if not (path / self.marker).is_file():
                raise FileNotFoundError(self.missing_default.format(path=path))
        else:
            path = Path(name_or_path).expanduser()
            if not path.exists():
                recover_dir(path)  # a writer killed while swapping new weights in left them beside it
            if not path.is_dir():
                raise FileNotFoundError(self.missing_folder.format(path=path))
        unsafe = unsafe_weight_files(path)
        if unsafe:
            raise UnsafeWeightsError(
                f"refusing to load the {self.name} in {path}: it names weights that are not safetensors: "
                f"{', '.join(unsafe)}. psi_gym reads safetensors only (other formats are unpickled, which runs "
                "code); convert them with safetensors.torch.save_file")
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


class ConfigWithoutOrigin:
    """Mix in before diffusers' ``ConfigMixin``: the config a model writes (``save_pretrained``,
    ``save_config``) leaves out ``_name_or_path``.

    diffusers sets that key to the folder a model was loaded from and writes it back on save, so a
    W0 fine-tuned from a flywheel's intermediate folder, or the final W0 of a training run that was
    resumed, would name a folder it no longer matches (a shipped asset's config would then depend
    on whether its training was interrupted). Loading sets the key again, so code that names a
    loaded model's source still reads it."""

    def to_json_string(self) -> str:
        config = json.loads(super().to_json_string())  # type: ignore[misc]
        config.pop("_name_or_path", None)
        return json.dumps(config, indent=2, sort_keys=True) + "\n"


def clear() -> None:
    """Forget every cached asset (the objects stay alive wherever they are used)."""
    with _lock:
        _cache.clear()


__all__ = ["ASSETS_DIR", "DEFAULT", "AssetKind", "ConfigWithoutOrigin", "UnsafeWeightsError", "cached", "clear",
           "fingerprint", "load_asset", "safetensors_problem", "unsafe_weight_files"]
