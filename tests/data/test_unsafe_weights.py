"""Weights load from safetensors only: a sharded index that names a pickle (.bin) shard is refused
before torch's unpickler is reached, for the world model, a Wan folder and the estimator; and
`safetensors_problem` finds truncated files from their header alone."""

from __future__ import annotations

import json

import pytest
import torch

from psi_gym.data.assets import UnsafeWeightsError, safetensors_problem, unsafe_weight_files


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was reached")

    monkeypatch.setattr(torch, "load", refuse)


def _pickle_index(folder, name="diffusion_pytorch_model.safetensors.index.json", shard="pytorch_model-00001.bin"):
    (folder / name).write_text(json.dumps({"metadata": {}, "weight_map": {"a.weight": shard}}))
    if "/" not in shard:
        (folder / shard).write_bytes(b"not really a pickle")


def test_world_model_with_a_bin_shard_is_refused(tmp_path):
    from psi_gym.world_model.config import debug_config
    from psi_gym.world_model.model import WorldModel

    folder = tmp_path / "w0"
    WorldModel.from_model_config(debug_config()).save_pretrained(folder)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    _pickle_index(folder)
    with pytest.raises(UnsafeWeightsError, match=r"not safetensors: 'pytorch_model-00001.bin'"):
        WorldModel.from_pretrained(folder)


def test_wan_folder_with_a_bin_shard_is_refused(tmp_path):
    from psi_gym.world_model.model import WorldModel

    transformer = tmp_path / "wan" / "transformer"
    transformer.mkdir(parents=True)
    (transformer / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel"}))
    _pickle_index(transformer)
    with pytest.raises(UnsafeWeightsError, match="safetensors"):
        WorldModel.from_pretrained(tmp_path / "wan")


def test_estimator_with_a_bin_shard_is_refused(tmp_path):
    from psi_gym.rewards.object_state import ObjectStateEstimator, ObjectStateEstimatorConfig, load_estimator

    folder = tmp_path / "estimator"
    ObjectStateEstimator.from_estimator_config(ObjectStateEstimatorConfig()).save_pretrained(folder)
    _pickle_index(folder)
    with pytest.raises(UnsafeWeightsError, match="estimator"):
        ObjectStateEstimator.from_pretrained(folder)
    with pytest.raises(UnsafeWeightsError):
        load_estimator(str(folder))


def test_shard_names_that_leave_the_folder_are_refused(tmp_path):
    _pickle_index(tmp_path, shard="../elsewhere/model.safetensors")
    assert unsafe_weight_files(tmp_path) == ["'../elsewhere/model.safetensors' (named by "
                                             "diffusion_pytorch_model.safetensors.index.json)"]
    (tmp_path / "diffusion_pytorch_model.safetensors.index.json").write_text("{not json")
    assert "not a readable index" in unsafe_weight_files(tmp_path)[0]


def test_safetensors_problem_reads_the_header_only(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(64), "b": torch.ones(3, 3)}, str(path))
    assert safetensors_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    assert "truncated" in safetensors_problem(path)
    path.write_bytes(b"")
    assert "0 bytes long" in safetensors_problem(path)
    path.write_bytes(data[:20])
    assert "truncated" in safetensors_problem(path)
