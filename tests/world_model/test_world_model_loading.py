"""`load_world_model`: one loader for names and folders, dtypes the diffusers way, and a cache
that sees new weights saved into a loaded folder."""

from __future__ import annotations

import logging

import pytest
import torch

from psi_gym.data.assets import clear
from psi_gym.world_model.loading import load_world_model
from psi_gym.world_model.model import WorldModel

from .conftest import make_debug_model


def test_new_weights_saved_into_a_loaded_folder_are_seen_on_the_next_load(tmp_path):
    make_debug_model(seed=0).save_pretrained(tmp_path / "w0")
    first = load_world_model(tmp_path / "w0", device="cpu")
    assert load_world_model(str(tmp_path / "w0"), device="cpu") is first  # one copy while the weights stay
    retrained = make_debug_model(seed=1)
    retrained.save_pretrained(tmp_path / "w0")  # e.g. the flywheel retrained W0 in this process
    second = load_world_model(tmp_path / "w0", device="cpu")
    assert second is not first
    for name, tensor in retrained.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], tensor)
    clear()
    assert load_world_model(tmp_path / "w0", device="cpu") is not second  # clear() forgets


def test_an_object_is_used_as_is():
    model = make_debug_model()
    assert load_world_model(model) is model


@pytest.mark.parametrize("source", ["folder", "random:debug"])
def test_half_precision_keeps_the_float32_modules_and_warns_nothing(tmp_path, caplog, source):
    spec = source
    if source == "folder":
        make_debug_model().save_pretrained(tmp_path / "w0")
        spec = tmp_path / "w0"
    with caplog.at_level(logging.WARNING):
        model = load_world_model(spec, device="cpu", dtype="bfloat16")
    assert not [r for r in caplog.records if "float32" in r.getMessage()], "diffusers warned about casting"
    assert model.dtype == torch.bfloat16
    assert model.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    for name, tensor in model.state_dict().items():
        if any(kept in name.split(".") for kept in WorldModel._keep_in_fp32_modules):
            assert tensor.dtype == torch.float32, name  # e.g. scale_shift_table, norm2
    # the physics and the perception stay float32 whole: every weight of theirs
    for part in (model.dynamics, model.perception):
        assert {p.dtype for p in part.parameters()} == {torch.float32}
    assert model.state_proj[0].weight.dtype == torch.bfloat16  # the renderer's tokens do not
    size = model.image_size
    out = model.predict(torch.zeros(1, 2, size, size, 3, dtype=torch.uint8), torch.zeros(1, 22), torch.zeros(1, 22),
                        torch.zeros(1, 384), generator=torch.Generator().manual_seed(0))
    assert out.state.dtype == torch.float32 and torch.isfinite(out.state).all()
    assert out.world_state.object_rotation.dtype == torch.float32 and out.frames.dtype == torch.uint8


def test_bad_names_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no world-model checkpoint folder"):
        load_world_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_world_model("random:debug", dtype="int8")
    with pytest.raises(TypeError, match="world_model must be a WorldModel"):
        load_world_model(3)


def test_every_public_name_resolves():
    import psi_gym.world_model as world_model

    for name in world_model.__all__:
        assert getattr(world_model, name) is not None, name
