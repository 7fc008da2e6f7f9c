"""The one asset resolver: names to folders, clear errors, and a cache that notices new files."""

from __future__ import annotations

import dataclasses
import os

import pytest

from psi_gym.data import assets
from psi_gym.data.assets import AssetKind, clear, fingerprint, load_asset

KIND = AssetKind(name="test asset", default_folder="no-such-default", marker="config.json",
                 missing_default="no default at {path}: make one with `make-it --out {path}`",
                 missing_folder="no test asset folder at {path}", files=("*.json", "*.bin"))


def write(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "weights.bin").write_text(text)


def test_names_resolve_to_folders_or_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="no default at .*no-such-default: make one with `make-it"):
        KIND.resolve("default")
    with pytest.raises(FileNotFoundError, match="no test asset folder at .*missing"):
        KIND.resolve(tmp_path / "missing")
    write(tmp_path / "shipped", "a")
    shipped = dataclasses.replace(KIND, default_folder=str(tmp_path / "shipped"))
    assert shipped.resolve("default") == tmp_path / "shipped"
    assert KIND.resolve(str(tmp_path / "shipped")) == tmp_path / "shipped"


def test_cache_reloads_when_the_files_change(tmp_path):
    clear()
    loads = []

    def load(folder):
        loads.append(folder)
        return (folder / "weights.bin").read_text()

    write(tmp_path / "asset", "old")
    first = load_asset(KIND, tmp_path / "asset", load)
    assert first == "old" and load_asset(KIND, str(tmp_path / "asset"), load) is first and len(loads) == 1
    assert load_asset(KIND, tmp_path / "asset", load, "other-device") == "old" and len(loads) == 2  # options key
    (tmp_path / "asset" / "weights.bin").write_text("new!")  # new weights saved into the same folder
    assert load_asset(KIND, tmp_path / "asset", load) == "new!" and len(loads) == 3
    (tmp_path / "asset" / "notes.txt").write_text("not a weight file")
    load_asset(KIND, tmp_path / "asset", load)
    assert len(loads) == 3
    clear()
    load_asset(KIND, tmp_path / "asset", load)
    assert len(loads) == 4


def test_fingerprint_sees_mtime_and_size(tmp_path):
    write(tmp_path, "abc")
    before = fingerprint(tmp_path, KIND.files)
    assert [name for name, *_ in before] == ["config.json", "weights.bin"]
    stat = (tmp_path / "weights.bin").stat()
    os.utime(tmp_path / "weights.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # same size, touched
    assert fingerprint(tmp_path, KIND.files) != before


def test_a_folder_left_mid_swap_is_recovered_on_load(tmp_path):
    write(tmp_path / "asset.old-1234", "old")  # a writer died between its two renames
    assert load_asset(KIND, tmp_path / "asset", lambda folder: (folder / "weights.bin").read_text()) == "old"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["asset"]
    assert assets.ASSETS_DIR.name == "assets"
