"""Wall-clock speed of `WorldModel.predict` (ms per batched env step, env steps per second).

On a CPU that other processes share, PyTorch's OpenMP pool (2 threads on 2 cores) spends most of
its time in barrier waits: measured here under load, B=1 went from 575 ms to 35 ms with
``torch.set_num_threads(1)``. Use one thread whenever the cores are not the model's alone (a
vector env next to a policy, the MuJoCo verifier, parallel tests).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from .model import WorldModel


def benchmark_predict(
    model: WorldModel,
    batch_sizes: Sequence[int] = (1, 16, 64),
    num_inference_steps: int | None = None,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Time `predict` on random inputs; returns ``{batch: {"ms_per_step", "env_steps_per_s"}}``.

    The instruction is passed as an embedding, so text encoding (cached in use) is not timed; the
    world state is read off the frames once, as an env does at reset, and handed to every call.
    ``ms_per_step`` is the median over ``repeats`` calls.
    """
    rng = np.random.default_rng(seed)
    config = model.config
    size, k = config.image_size, model.num_context_frames
    results: dict[int, dict[str, float]] = {}
    for batch in batch_sizes:
        frames = rng.integers(0, 256, (batch, k, size, size, 3), dtype=np.uint8)
        state = rng.uniform(-1, 1, (batch, config.state_dim)).astype(np.float32)
        action = rng.uniform(-1, 1, (batch, config.action_dim)).astype(np.float32)
        embedding = torch.from_numpy(rng.normal(size=(batch, config.instruction_dim)).astype(np.float32))
        generator = torch.Generator(device=model.device).manual_seed(seed)
        world_state = model.initial_state(frames[:, -1], state)
        times = []
        for index in range(warmup + repeats):
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model.predict(frames, state, action, embedding, generator=generator, num_inference_steps=num_inference_steps,
                          world_state=world_state)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            if index >= warmup:
                times.append(time.perf_counter() - start)
        ms = float(np.median(times) * 1000.0)
        results[batch] = {"ms_per_step": ms, "env_steps_per_s": batch / (ms / 1000.0)}
    return results
