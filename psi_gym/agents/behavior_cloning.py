"""Behaviour cloning of Psi-R2 on retargeted human demos and robot rollouts (``psi-gym train-r2``).

Every sample is one env step ``t`` of one episode, laid out exactly as PsiW0-Retarget-v0 would
show it (`step_samples`): the frame(s) up to ``t``, the joints at ``t``, the reference rows
``ref[t+1 .. t+h]``, the instruction embedding and the progress ``t / H``. The labels:

* ``action`` (c, A): the residual the episode applied at ``t .. t+c-1``, ``(q*_t - ref[t+1]) / s``
  (joint targets ``q*``, ``s`` the env's residual scale), clipped to [-1, 1], as synergies when the
  policy acts in them; rows past the episode's end are masked;
* ``next_frame``: the camera frame at ``t+1`` (an auxiliary target: the world-action model);
* ``touch`` (5,): the human hand's fingertip contact at ``t+1`` (touch > 0.05 N), the report's
  *masked* modality: present for retargeted human demos, masked out for robot rollouts.

Sources (after the report's "dimensional alignment": the human demo retargeted to the robot):

* human demos (``psi-gym demos``): retargeted, replayed raw on the robot over the env's horizon
  (`horizon_targets`), so the labels are the retarget itself (residual 0) — the human's intent in
  robot joints — with the human's touch;
* robot rollouts (``psi-gym collect``) that retarget a human demo (``kind`` ``retarget`` or
  ``explore``: the reference plus a smooth random residual), by default only those the simulator
  labelled successful: the corrections that worked, without touch.

Notation: ``T`` the demo's length, ``H = T + episode_slack`` the env's horizon, ``k`` frames,
``h`` reference rows, ``c`` chunk rows, ``A`` action dims.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from psi_gym.agents.policy import NUM_FINGERTIPS, PsiR2Config, PsiR2Policy, joints_to_synergy
from psi_gym.sim.hands import hand_spec, residual_scale
from psi_gym.sim.verify import horizon_targets, replay_verdict

TOUCH_THRESHOLD = 0.05  # N: a fingertip touches
DEFAULT_EPISODE_SLACK = 8  # PsiW0-Retarget-v0's episode_slack


@dataclass
class BCSource:
    """One episode ready to be cut into samples."""

    frames: np.ndarray  # (S+1, H, W, 3) uint8, S steps recorded
    state: np.ndarray  # (S+1, 22)
    joint_targets: np.ndarray  # (S, 22) absolute targets applied
    reference: np.ndarray  # (T+1, 22) the retargeted reference
    instruction: str
    horizon: int  # H of the env for this demo
    touch: np.ndarray | None  # (S+1, 5) bool, None: masked (robot data)
    kind: str  # "human_demo" | "robot_rollout"
    success: bool
    action_labels: bool = True  # False: it teaches the next frame and touch only, its actions are no labels


def robot_episode_reference(episode: Any) -> np.ndarray | None:
    """The retargeted reference a robot episode followed: its ``metadata["reference"]`` (retargets,
    generated episodes) or, for ``psi-gym collect`` rollouts of kind ``retarget``/``explore``, the
    human demo it retargeted, made again from its (seed, index). None for scripted rollouts."""
    metadata = episode.metadata
    if "reference" in metadata:
        return np.asarray(metadata["reference"], np.float32)
    if metadata.get("kind") not in ("retarget", "explore") or "index" not in metadata:
        return None
    from psi_gym.retarget.human_demos import make_demo
    from psi_gym.retarget.pipeline import reference_from_demo

    # the same stream `psi_gym.retarget.robot_rollouts.make_rollout` drew the demo from
    demo = make_demo(episode.task, episode.seed, 1_000_000 + int(metadata["index"]), "precision", episode.image_size[0])
    return reference_from_demo(demo).astype(np.float32)


def human_demo_source(demo: Any, episode_slack: int = DEFAULT_EPISODE_SLACK) -> BCSource:
    """A human demo retargeted and replayed raw on the robot over the env's horizon, with its touch."""
    from psi_gym.retarget.pipeline import reference_from_demo

    reference = reference_from_demo(demo).astype(np.float32)
    horizon = len(reference) - 1 + episode_slack
    targets = horizon_targets(reference, num_steps=horizon)
    verdict = replay_verdict(demo.scene, reference[0], targets, render=True, image_size=demo.image_size[0])
    if verdict.recording is None:
        raise ValueError(f"the raw retarget of demo {demo.metadata.get('id')!r} went unstable in the simulator")
    tactile = np.asarray(demo.tactile, np.float32)
    touch = tactile > TOUCH_THRESHOLD
    touch = np.concatenate([touch, np.repeat(touch[-1:], horizon + 1 - len(touch), axis=0)])  # held past T
    record = verdict.recording
    return BCSource(record.frames, record.state, targets, reference, demo.instruction, horizon, touch,
                    "human_demo", verdict.success)


def robot_rollout_source(episode: Any, episode_slack: int = DEFAULT_EPISODE_SLACK) -> BCSource | None:
    """A robot episode with a known reference (None otherwise); touch masked."""
    reference = robot_episode_reference(episode)
    if reference is None:
        return None
    return BCSource(episode.frames, episode.state, np.asarray(episode.action, np.float32), reference,
                    episode.instruction, len(reference) - 1 + episode_slack, None, "robot_rollout", bool(episode.success))


@dataclass
class BCSamples:
    """Samples as arrays (``N`` samples; see the module doc)."""

    pixels: np.ndarray  # (N, H, W, 3k) uint8
    agent_pos: np.ndarray  # (N, 22)
    reference: np.ndarray  # (N, 22h)
    instruction: np.ndarray  # (N, 384)
    progress: np.ndarray  # (N, 1)
    action: np.ndarray  # (N, c, A)
    action_mask: np.ndarray  # (N, c) bool
    next_frame: np.ndarray  # (N, H, W, 3) uint8
    touch: np.ndarray  # (N, 5) float32
    touch_mask: np.ndarray  # (N,) bool
    kind: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return int(self.agent_pos.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[BCSamples]) -> BCSamples:
        return BCSamples(**{name: np.concatenate([getattr(p, name) for p in parts])
                            for name in BCSamples.__dataclass_fields__})

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        return {name: torch.as_tensor(getattr(self, name)[index]) for name in BCSamples.__dataclass_fields__
                if name != "kind"}


def step_samples(source: BCSource, config: PsiR2Config, embedding: np.ndarray) -> BCSamples:
    """Cut one source into its per-step samples as the env shows them (see the module doc)."""
    spec = hand_spec("robot")
    ranges = spec.joint_ranges().astype(np.float32)
    scale = residual_scale(spec).astype(np.float32)
    reference = np.clip(source.reference, ranges[:, 0], ranges[:, 1])
    T = len(reference) - 1
    steps = len(source.joint_targets)
    k, h, c = config.frame_stack, config.reference_horizon, config.chunk_size
    t = np.arange(steps)
    # residual labels of every recorded step: (q*_t - ref[min(t+1, T)]) / s
    residual = np.clip((source.joint_targets - reference[np.minimum(t + 1, T)]) / scale, -1.0, 1.0)
    labels = joints_to_synergy(residual) if config.action_space == "synergy" else residual.astype(np.float32)
    chunk_index = t[:, None] + np.arange(c)[None]
    action_mask = (chunk_index < steps) & source.action_labels
    action = labels[np.minimum(chunk_index, steps - 1)]
    # frame stack: frames t-k+1 .. t, the first frame repeated before the start (as the env fills it)
    frame_index = np.maximum(t[:, None] - np.arange(k)[::-1][None], 0)
    frames = source.frames[frame_index]  # (S, k, H, W, 3)
    if config.channels_first:
        pixels = frames.transpose(0, 1, 4, 2, 3).reshape(steps, 3 * k, *frames.shape[2:4])
    else:
        pixels = frames.transpose(0, 2, 3, 1, 4).reshape(steps, *frames.shape[2:4], 3 * k)
    reference_rows = reference[np.minimum(t[:, None] + 1 + np.arange(h)[None], T)].reshape(steps, -1)
    touch = source.touch[1:steps + 1].astype(np.float32) if source.touch is not None else np.zeros((steps, NUM_FINGERTIPS), np.float32)
    return BCSamples(
        pixels=np.ascontiguousarray(pixels), agent_pos=source.state[:steps].astype(np.float32),
        reference=reference_rows.astype(np.float32), instruction=np.repeat(embedding[None], steps, axis=0),
        progress=(t / source.horizon).astype(np.float32)[:, None], action=action.astype(np.float32),
        action_mask=action_mask, next_frame=source.frames[1:steps + 1], touch=touch,
        touch_mask=np.full(steps, source.touch is not None), kind=np.full(steps, source.kind),
    )


def collect_sources(human_demos: Iterable[Any] = (), robot_episodes: Iterable[Any] = (), successes_only: bool = True,
                    episode_slack: int = DEFAULT_EPISODE_SLACK, progress: Callable[[int], None] | None = None
                    ) -> list[BCSource]:
    """`BCSource` of human demos (retargeted) and robot rollouts (with a reference); by default only
    successful ones (the human did the task; the robot did, in the simulator)."""
    sources = []
    for demo in human_demos:
        if demo.embodiment != "human":
            raise ValueError(f"--demos must hold human demos (psi-gym demos), got a {demo.embodiment} episode")
        if successes_only and not demo.success:  # the human's intent only where the human did the task
            continue
        sources.append(human_demo_source(demo, episode_slack))
        if progress:
            progress(1)
    for episode in robot_episodes:
        if episode.embodiment != "robot" or (successes_only and not episode.success):
            continue
        source = robot_rollout_source(episode, episode_slack)
        if source is not None:
            sources.append(source)
        if progress:
            progress(1)
    return sources


def build_samples(sources: Sequence[BCSource], config: PsiR2Config) -> BCSamples:
    from psi_gym.world_model.text_encoder import encode_instructions

    if not sources:
        raise ValueError("no behaviour-cloning data: give human demos and/or robot rollouts with a reference")
    embeddings = {text: encode_instructions(text).detach().float().cpu().numpy()
                  for text in sorted({s.instruction for s in sources})}
    return BCSamples.concatenate([step_samples(s, config, embeddings[s.instruction]) for s in sources])


# ------------------------------------------------------------------------------------ loss
@dataclass
class BCLossWeights:
    """Weights of the behaviour-cloning loss terms."""

    action: float = 1.0
    """MSE between ``tanh(loc)`` and the residual labels (masked chunk rows)."""
    next_frame: float = 1.0
    """MSE of the predicted next frame in [-1, 1] units (the world-action model's auxiliary target)."""
    touch: float = 0.2
    """binary cross-entropy of the fingertip touch, on human samples only (the masked modality); 0 = off."""


def bc_loss(policy: PsiR2Policy, batch: dict[str, torch.Tensor], weights: BCLossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """The behaviour-cloning loss of one batch and its parts."""
    inputs = [batch[key] for key in policy.input_keys]
    out = policy(*inputs)
    mask = batch["action_mask"].float()
    action_error = ((torch.tanh(out.action_loc) - batch["action"]) ** 2).mean(-1)
    action_loss = (action_error * mask).sum() / mask.sum().clamp_min(1.0)
    target = batch["next_frame"].permute(0, 3, 1, 2).float() / 127.5 - 1.0
    frame_loss = F.mse_loss(out.next_frame, target)
    touch_mask = batch["touch_mask"].float()
    touch_error = F.binary_cross_entropy_with_logits(out.touch_logits, batch["touch"], reduction="none").mean(-1)
    touch_loss = (touch_error * touch_mask).sum() / touch_mask.sum().clamp_min(1.0)
    loss = weights.action * action_loss + weights.next_frame * frame_loss + weights.touch * touch_loss
    return loss, {"loss": loss.item(), "action": action_loss.item(), "next_frame": frame_loss.item(),
                  "touch": touch_loss.item()}


@torch.no_grad()
def evaluate_behavior_cloning(policy: PsiR2Policy, samples: BCSamples, batch_size: int = 256) -> dict[str, float]:
    """Held-out numbers of a cloned policy: action MSE (``tanh(loc)`` vs labels), next-frame MSE, and
    on samples with touch, the touch accuracy and F1 (contact = logit > 0)."""
    policy.eval()
    action_error, frame_error, hits, true_pos, false_pos, false_neg, touched = [], [], 0.0, 0.0, 0.0, 0.0, 0
    for first in range(0, len(samples), batch_size):
        batch = samples.batch(np.arange(first, min(first + batch_size, len(samples))))
        out = policy(*[batch[key] for key in policy.input_keys])
        mask = batch["action_mask"].float()
        action_error.append(float((((torch.tanh(out.action_loc) - batch["action"]) ** 2).mean(-1) * mask).sum()
                                  / mask.sum().clamp_min(1)))
        target = batch["next_frame"].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        frame_error.append(float(F.mse_loss(out.next_frame, target)))
        rows = batch["touch_mask"]
        if rows.any():
            predicted, truth = out.touch_logits[rows] > 0, batch["touch"][rows] > 0.5
            hits += float((predicted == truth).float().sum())
            true_pos += float((predicted & truth).sum())
            false_pos += float((predicted & ~truth).sum())
            false_neg += float((~predicted & truth).sum())
            touched += int(truth.numel())
    result = {"action_mse": float(np.mean(action_error)), "next_frame_mse": float(np.mean(frame_error))}
    if touched:
        result["touch_accuracy"] = hits / touched
        result["touch_f1"] = 2 * true_pos / max(2 * true_pos + false_pos + false_neg, 1.0)
    return result


# --------------------------------------------------------------------------------- trainer
@dataclass
class BCConfig:
    """Hyper-parameters of `train_behavior_cloning`."""

    policy: PsiR2Config = field(default_factory=PsiR2Config)
    weights: BCLossWeights = field(default_factory=BCLossWeights)
    steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    checkpoint_every: int = 500
    """save ``checkpoint-<step>/`` (a `from_pretrained` folder) every this many steps (0: never)."""
    seed: int = 0
    progress: bool = True


@dataclass
class BCSummary:
    """What ``psi-gym train-r2`` did."""

    out: str
    architecture: str
    num_parameters: int
    samples: int
    human_samples: int
    robot_samples: int
    touch_weight: float
    steps: int
    first_loss: dict[str, float]
    final_loss: dict[str, float]
    checkpoints: list[str]
    seconds: float


def train_behavior_cloning(samples: BCSamples, config: BCConfig, out: str | Path | None = None,
                           policy: PsiR2Policy | None = None) -> tuple[PsiR2Policy, BCSummary]:
    """Fit R2 to ``samples``; write ``checkpoint-<step>/`` and ``final/`` into ``out`` (if given)."""
    from psi_gym.data.atomic import replacing_dir

    rng = np.random.default_rng(config.seed)  # batches; the weights' init is seeded below
    if policy is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            policy = PsiR2Policy.from_policy_config(config.policy)
    optimizer = torch.optim.AdamW([p for n, p in policy.named_parameters() if n != "log_std"],
                                  lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(config.steps, 1), eta_min=config.learning_rate * 0.1)
    out = Path(out) if out is not None else None
    checkpoints: list[str] = []
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="train-r2", unit="step")
    start = time.perf_counter()
    first: dict[str, float] = {}
    parts: dict[str, float] = {}
    policy.train()
    for step in range(1, config.steps + 1):
        index = rng.integers(0, len(samples), size=min(config.batch_size, len(samples)))
        loss, parts = bc_loss(policy, samples.batch(index), config.weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        first = first or parts
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix({key: f"{value:.4f}" for key, value in parts.items()})
        if out is not None and config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
            with replacing_dir(out / f"checkpoint-{step:06d}") as tmp:
                policy.save_pretrained(tmp)
            checkpoints.append(str(out / f"checkpoint-{step:06d}"))
    if bar is not None:
        bar.close()
    policy.eval()
    summary = BCSummary(
        out=str(out) if out is not None else "", architecture=policy.policy_config.architecture,
        num_parameters=policy.num_parameters(), samples=len(samples),
        human_samples=int((samples.kind == "human_demo").sum()), robot_samples=int((samples.kind == "robot_rollout").sum()),
        touch_weight=config.weights.touch, steps=config.steps, first_loss=first, final_loss=parts,
        checkpoints=checkpoints, seconds=time.perf_counter() - start,
    )
    if out is not None:
        with replacing_dir(out / "final") as tmp:
            policy.save_pretrained(tmp)
            (tmp / "training_summary.json").write_text(json.dumps(asdict(summary), indent=1), encoding="utf-8")
        summary.checkpoints.append(str(out / "final"))
    return policy, summary


__all__ = ["BCConfig", "BCLossWeights", "BCSamples", "BCSource", "BCSummary", "bc_loss", "build_samples",
           "collect_sources", "evaluate_behavior_cloning", "human_demo_source", "robot_episode_reference", "robot_rollout_source",
           "step_samples", "train_behavior_cloning"]
