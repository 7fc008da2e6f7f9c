"""Scene variation inside W0: more starts for refinement from one demo, as the report suggests.

W0 starts every episode from the demo's first frame: its perception reads the object's pose, kind
and size off that frame, its dynamics advances that state deterministically, and its renderer draws
each frame from the state and the first frame with its own noise. So a demo gives new scenes *inside
W0* for free:

* ``appearance``: the object's pixels in the first frame recoloured (brightness x ``b`` and a small
  per-channel tint ``c``: ``rgb' = clip(rgb * b * (1 + c))``, only where the pixel has the object's
  hue and is saturated);
* ``frame``: the whole first frame perturbed (brightness, contrast around the mean, pixel noise);
* ``seed``: the same first frame, the renderer's noise drawn from another seed (every start gets
  its own seed anyway; this kind changes nothing else). W0's predicted state (joints, object pose)
  is then the same as the demo's by construction; only the frames, and what the env's estimator
  reads off them, differ. ``appearance`` and ``frame`` change what perception reads, and with it
  the whole predicted trajectory.

A start can also be varied the other way, in what W0 reads: the env's ``object_shift`` reset
option moves W0's reading of the object's start position (`WorldState.shift_object`); the
flywheel's self-consistency reruns and the robust search (`psi_gym.agents.search`) use it.

Every kind leaves the physical scene as it is (object size, pose, mass; the hand's start), so a
trajectory refined from a varied start is still a plan for the demo's scene, and the simulator
can judge it (evaluation only). Geometric changes (moving the object in the first frame) would
make a scene the simulator does not have; they are left out on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from psi_gym.data.episode import Episode
from psi_gym.sim.scene import OBJECT_RGBA

KINDS = ("appearance", "frame", "seed")


@dataclass
class VariationConfig:
    """How strongly each kind varies a start."""

    brightness: tuple[float, float] = (0.75, 1.2)
    """``appearance``: range of the object's brightness factor b."""
    tint: float = 0.12
    """``appearance``: per-channel tint c in [-tint, tint]."""
    hue_tolerance_deg: float = 30.0
    """``appearance``: a pixel is the object's if its hue is this close to the object colour's."""
    min_saturation: float = 0.55
    """``appearance``: ... and it is at least this saturated (the table, wall and hand are not)."""
    frame_brightness: float = 0.08
    """``frame``: brightness factor in [1 - x, 1 + x]."""
    frame_contrast: float = 0.08
    """``frame``: contrast factor around the frame's mean in [1 - x, 1 + x]."""
    frame_noise: float = 2.0
    """``frame``: standard deviation of Gaussian pixel noise (grey levels)."""


def _hue_saturation(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hue (degrees) and saturation of float RGB in [0, 1], shape (..., 3)."""
    high, low = rgb.max(-1), rgb.min(-1)
    chroma = high - low
    saturation = np.where(high > 0, chroma / np.maximum(high, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    return np.where(chroma > 0, hue, 0.0), saturation


def object_mask(frame: np.ndarray, object_kind: str, config: VariationConfig | None = None) -> np.ndarray:
    """(H, W) bool: the pixels of ``frame`` (H, W, 3) uint8 that show the object of ``object_kind``."""
    config = config or VariationConfig()
    colour = np.array([float(v) for v in OBJECT_RGBA[object_kind].split()[:3]])
    object_hue, _ = _hue_saturation(colour)
    hue, saturation = _hue_saturation(frame.astype(np.float64) / 255.0)
    distance = np.abs((hue - object_hue + 180.0) % 360.0 - 180.0)
    return (distance < config.hue_tolerance_deg) & (saturation >= config.min_saturation)


def vary_frame(frame: np.ndarray, kind: str, object_kind: str, rng: np.random.Generator,
               config: VariationConfig | None = None) -> tuple[np.ndarray, str]:
    """A varied copy of a first frame and a description of the change (see the module doc)."""
    config = config or VariationConfig()
    if kind not in KINDS:
        raise ValueError(f"variation kind must be one of {KINDS}, got {kind!r}")
    image = frame.astype(np.float64)
    if kind == "appearance":
        mask = object_mask(frame, object_kind, config)
        brightness = rng.uniform(*config.brightness)
        tint = rng.uniform(-config.tint, config.tint, 3)
        image[mask] = image[mask] * brightness * (1.0 + tint)
        description = f"appearance b={brightness:.2f} tint={np.round(tint, 2).tolist()} ({int(mask.sum())} px)"
    elif kind == "frame":
        brightness = rng.uniform(1 - config.frame_brightness, 1 + config.frame_brightness)
        contrast = rng.uniform(1 - config.frame_contrast, 1 + config.frame_contrast)
        mean = image.mean()
        image = ((image - mean) * contrast + mean) * brightness + rng.normal(0.0, config.frame_noise, image.shape)
        description = f"frame brightness={brightness:.3f} contrast={contrast:.3f} noise={config.frame_noise:g}"
    else:
        description = "seed"
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), description


def vary_demo(demo: Episode, kind: str, rng: np.random.Generator, tag: str,
              config: VariationConfig | None = None) -> Episode:
    """A copy of a retargeted demo (an env's demo: ``metadata`` with ``reference``) whose first frame
    is varied. Its id (``parent``, what the env's demo set names it by) is ``<demo id>~<tag>``; its
    ``perturbation`` says what changed and ``metadata["varies"]`` which demo it varies."""
    object_kind = demo.scene["object_kind"]
    first, description = vary_frame(demo.frames[0], kind, object_kind, rng, config)
    frames = demo.frames.copy()
    frames[0] = first
    demo_id = demo.parent or str(demo.metadata.get("id", ""))
    return demo.replace(frames=frames, parent=f"{demo_id}~{tag}", perturbation=description,
                        metadata={**demo.metadata, "varies": demo_id, "variation": kind})


def vary_demos(demos: Sequence[Episode], per_demo: int, kinds: Sequence[str], rng: np.random.Generator,
               prefix: str = "v", config: VariationConfig | None = None) -> list[Episode]:
    """``per_demo`` varied starts of each demo, the kinds taken in turn."""
    if per_demo and not kinds:
        raise ValueError("give at least one variation kind")
    varied = []
    for demo in demos:
        for k in range(per_demo):
            varied.append(vary_demo(demo, kinds[k % len(kinds)], rng, f"{prefix}{k}", config))
    return varied


__all__ = ["KINDS", "VariationConfig", "object_mask", "vary_demo",
           "vary_demos", "vary_frame"]
