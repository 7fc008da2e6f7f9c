import json

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file

from psi_gym.world_model.checkpoint import (
    CheckpointError,
    default_checkpoint_path,
    is_wan_folder,
    load_optimizer_state,
    save_optimizer_state,
)
from psi_gym.world_model.config import DEBUG_BACKBONE, renderer_in_channels
from psi_gym.world_model.model import WorldModel
from tests.default_world_model import require_default_world_model

from .conftest import make_debug_model, random_inputs

WEIGHTS = "diffusion_pytorch_model.safetensors"


def test_save_load_roundtrip_identical_outputs(tmp_path):
    model = make_debug_model(moving=True)  # trained-looking: frames and states that move
    model.save_pretrained(tmp_path / "w0")
    assert (tmp_path / "w0" / "config.json").is_file() and (tmp_path / "w0" / WEIGHTS).is_file()
    assert not list((tmp_path / "w0").glob("*.bin"))  # never pickle
    loaded = WorldModel.from_pretrained(tmp_path / "w0").eval()
    assert dict(loaded.config) == {**dict(model.config), "_name_or_path": str(tmp_path / "w0")}
    frames, state, action, embedding = random_inputs(model, batch=3)

    def roll(world_model):  # two steps, the world state handed back
        out = world_model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(3))
        return out, world_model.predict(out.frames[:, None], out.state, action, embedding,
                                        generator=torch.Generator().manual_seed(4), world_state=out.world_state)

    for a, b in zip(roll(model), roll(loaded)):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.state, b.state)
        np.testing.assert_array_equal(a.object_position, b.object_position)
        torch.testing.assert_close(a.world_state.object_rotation, b.world_state.object_rotation, atol=0, rtol=0)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no world-model checkpoint folder"):
        WorldModel.from_pretrained(tmp_path / "nope")


def test_default_checkpoint_resolves_or_explains():
    if (default_checkpoint_path() / "config.json").is_file():
        require_default_world_model()
        model = WorldModel.from_pretrained("default")
        assert isinstance(model, WorldModel)
    else:
        with pytest.raises(FileNotFoundError, match="psi-gym train-w0"):
            WorldModel.from_pretrained("default")


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no config.json"):
        WorldModel.from_pretrained(tmp_path / "empty")


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "w0"
    make_debug_model().save_pretrained(path)
    return path


def test_missing_weights(saved):
    (saved / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors"):
        WorldModel.from_pretrained(saved)


def test_truncated_weights(saved):
    data = (saved / WEIGHTS).read_bytes()
    (saved / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(saved)):
        WorldModel.from_pretrained(saved)


def test_garbage_config(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON config"):
        WorldModel.from_pretrained(saved)


def test_config_of_another_model(saved):
    config = json.loads((saved / "config.json").read_text())
    config["_class_name"] = "UNet2DModel"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="expected a WorldModel config"):
        WorldModel.from_pretrained(saved)


def test_wrong_shapes(saved):
    config = json.loads((saved / "config.json").read_text())
    config["condition_hidden_dim"] = 24  # weights were saved with 16
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="expected shape"):
        WorldModel.from_pretrained(saved)


def test_missing_tensor(saved):
    weights = load_file(str(saved / WEIGHTS))
    weights.pop("dynamics.out.weight")
    save_file(weights, str(saved / WEIGHTS))
    with pytest.raises(CheckpointError, match="dynamics.out.weight"):
        WorldModel.from_pretrained(saved)


def _tiny_wan(in_channels: int) -> WanTransformer3DModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return WanTransformer3DModel(**DEBUG_BACKBONE.to_dict(), in_channels=in_channels, out_channels=in_channels)


def test_wan_style_folder_loads_through_same_code(tmp_path):
    # a Wan2.2-TI2V-5B-like diffusers folder (transformer/ holding a latent-space Wan, 48 channels), tiny sizes
    wan = _tiny_wan(in_channels=48)
    wan.save_pretrained(tmp_path / "wan" / "transformer")
    (tmp_path / "wan" / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    assert is_wan_folder(tmp_path / "wan")
    model = WorldModel.from_pretrained(tmp_path / "wan", image_size=32, dynamics_hidden_dim=24,
                                       perception_channels=[8, 8, 8, 8], perception_hidden_dim=16,
                                       condition_hidden_dim=16, num_condition_tokens=1).eval()
    assert isinstance(model, WorldModel)
    assert model.config.dynamics_hidden_dim == 24 and model.config.backbone["num_layers"] == DEBUG_BACKBONE.num_layers
    assert model.transformer.config.in_channels == renderer_in_channels() and model.transformer.config.out_channels == 3
    # the blocks keep the pretrained weights; the new pixel-space output starts at "the scene as it was"
    torch.testing.assert_close(model.transformer.blocks[0].attn1.to_q.weight, wan.blocks[0].attn1.to_q.weight)
    assert (model.transformer.proj_out.weight == 0).all()
    frames, state, action, embedding = random_inputs(model, batch=2)
    out = model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (2, 32, 32, 3) and len(out.world_state) == 2
    # and once saved it is an ordinary world-model folder that predicts the same
    model.save_pretrained(tmp_path / "w0")
    assert not is_wan_folder(tmp_path / "w0")
    again = WorldModel.from_pretrained(tmp_path / "w0").eval()
    torch.testing.assert_close(again.transformer.blocks[0].attn1.to_q.weight, wan.blocks[0].attn1.to_q.weight)
    repeat = again.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(out.frames, repeat.frames)
    np.testing.assert_array_equal(out.state, repeat.state)


def test_wan_folder_with_matching_channels_keeps_patch_embedding(tmp_path):
    wan = _tiny_wan(in_channels=renderer_in_channels())
    wan.save_pretrained(tmp_path / "wan" / "transformer")
    model = WorldModel.from_pretrained(tmp_path / "wan", image_size=32)
    torch.testing.assert_close(model.transformer.patch_embedding.weight, wan.patch_embedding.weight)


def test_wan_folder_refuses_a_backbone_override(tmp_path):
    _tiny_wan(48).save_pretrained(tmp_path / "wan" / "transformer")
    with pytest.raises(CheckpointError, match="do not pass backbone="):
        WorldModel.from_pretrained(tmp_path / "wan", backbone={"num_layers": 2})


def test_wan_i2v_folder_rejected(tmp_path):
    (tmp_path / "wan" / "transformer").mkdir(parents=True)
    config = {"_class_name": "WanTransformer3DModel", "image_dim": 1280, "added_kv_proj_dim": 5120}
    (tmp_path / "wan" / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="image-encoder"):
        WorldModel.from_pretrained(tmp_path / "wan")


def test_wan_folder_without_weights(tmp_path):
    _tiny_wan(48).save_config(tmp_path / "wan" / "transformer")
    with pytest.raises(CheckpointError, match="weights are missing"):
        WorldModel.from_pretrained(tmp_path / "wan", image_size=32)


def test_optimizer_state_roundtrip(tmp_path):
    model = make_debug_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    loss = sum(p.square().sum() for p in model.parameters())
    loss.backward()
    optimizer.step()
    save_optimizer_state(optimizer, tmp_path)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.bin"))
    fresh = torch.optim.AdamW(model.parameters(), lr=5.0)
    load_optimizer_state(fresh, tmp_path)
    a, b = optimizer.state_dict(), fresh.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 1e-3
    for key, value in a["state"].items():
        for name, tensor in value.items():
            torch.testing.assert_close(b["state"][key][name], tensor)


def test_same_class_scales_to_wan22_ti2v_5b():
    from psi_gym.world_model.config import WAN22_TI2V_5B_BACKBONE, WorldModelConfig

    with torch.device("meta"):  # shapes only, no memory
        model = WorldModel.from_model_config(WorldModelConfig(backbone=WAN22_TI2V_5B_BACKBONE))
    backbone = sum(p.numel() for p in model.transformer.parameters())
    assert 4.9e9 < backbone < 5.1e9
    assert model.transformer.config.num_layers == 30 and model.transformer.config.text_dim == 4096
