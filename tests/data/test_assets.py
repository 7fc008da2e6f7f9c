"""The one asset resolver: names to folders, clear errors, and a cache that notices new files."""

from __future__ import annotations

import dataclasses
import json
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


def _tiny_model(kind: str):
    from psi_gym.agents.policy import PsiR2Policy, debug_policy_config
    from psi_gym.rewards.object_state import ObjectStateEstimator, ObjectStateEstimatorConfig
    from psi_gym.world_model.config import debug_config
    from psi_gym.world_model.model import WorldModel

    if kind == "world_model":
        return WorldModel.from_model_config(debug_config(image_size=32))
    if kind == "estimator":
        return ObjectStateEstimator.from_estimator_config(ObjectStateEstimatorConfig(channels=(8, 8, 16, 16), hidden_dim=16))
    return PsiR2Policy.from_policy_config(debug_policy_config())


@pytest.mark.parametrize("kind", ["world_model", "estimator", "policy"])
def test_a_reloaded_model_saves_without_naming_where_it_was_loaded_from(tmp_path, kind):
    """diffusers records the folder a model was loaded from in ``_name_or_path`` and writes it back
    on save: a model fine-tuned from a checkpoint would name a folder it no longer matches. The
    project's models leave it out (`ConfigWithoutOrigin`), and loading still sets it."""
    model = _tiny_model(kind)
    model.save_pretrained(tmp_path / "first")
    loaded = type(model).from_pretrained(str(tmp_path / "first"))
    assert loaded.config["_name_or_path"] == str(tmp_path / "first")  # loading still records it
    loaded.save_pretrained(tmp_path / "second")
    saved = json.loads((tmp_path / "second" / "config.json").read_text())
    assert "_name_or_path" not in saved and saved["_class_name"] == type(model).__name__
    assert (tmp_path / "second" / "config.json").read_bytes() == (tmp_path / "first" / "config.json").read_bytes()
