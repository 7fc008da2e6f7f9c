"""Few-step flow-matching sampler for the next frame, on diffusers' Euler scheduler.

Notation (rectified flow, as in `FlowMatchEulerDiscreteScheduler`):

* ``x0``  clean frame in [-1, 1];  ``eps`` standard normal noise;  ``sigma`` in [0, 1].
* ``x_sigma = (1 - sigma) * x0 + sigma * eps``   (``sigma = 1`` is pure noise).
* velocity ``v = d x_sigma / d sigma = eps - x0 = (x_sigma - x0) / sigma``.
* Euler step ``x_{sigma'} = x_sigma + (sigma' - sigma) * v``; for ``sigma' = 0`` it lands on ``x0``.

The network predicts ``x0`` (x0-parameterisation: the clean frame is what carries the outcome, and
few steps land exactly on the prediction); the sampler converts it to ``v`` for the scheduler.
The timestep handed to the network is ``t = 1000 * sigma`` (the scheduler's own convention).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

NUM_TRAIN_TIMESTEPS = 1000

# denoise(x_sigma, sigma) -> (x0 prediction, anything else the caller wants from the last call)
DenoiseFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, object]]


def sampling_sigmas(num_inference_steps: int) -> list[float]:
    """Evenly spaced noise levels from 1 down to (not including) 0: 2 steps give [1.0, 0.5].

    The scheduler's own default spacing ends at sigma = 1/1000, which wastes the second of two
    steps on an almost clean input, so the sampler passes these explicitly.
    """
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    return np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1].astype(np.float32).tolist()


class FlowMatchSampler:
    """Draws ``x_1 = eps`` from a generator and integrates to ``x_0`` in a few Euler steps.

    Args:
        shift: timestep shift of the schedule (``sigma -> shift*sigma / (1 + (shift-1)*sigma)``);
            1 keeps the even spacing.
        stochastic: re-noise with fresh noise between steps (``x_{sigma'} = (1-sigma') x0 + sigma' eps'``)
            instead of the deterministic Euler update.
    """

    def __init__(self, shift: float = 1.0, stochastic: bool = False) -> None:
        self.scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift, stochastic_sampling=stochastic
        )

    def sample(
        self,
        denoise: DenoiseFn,
        shape: tuple[int, ...],
        num_inference_steps: int,
        generator: torch.Generator | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, object]:
        """Run the sampler; returns the final ``x0`` and the extras of the last ``denoise`` call."""
        scheduler = self.scheduler
        scheduler.set_timesteps(sigmas=sampling_sigmas(num_inference_steps), device=device)
        x = randn_tensor(shape, generator=generator, device=device, dtype=dtype)  # x at sigma = 1
        extras = None
        for index, t in enumerate(scheduler.timesteps):
            sigma = scheduler.sigmas[index]
            sigma_batch = sigma.to(dtype).expand(shape[0])
            x0, extras = denoise(x, sigma_batch)
            velocity = (x - x0) / sigma  # v = (x_sigma - x0) / sigma; sigma > 0 at every call
            x = scheduler.step(velocity, t, x, generator=generator, return_dict=False)[0]
        return x.to(dtype), extras
