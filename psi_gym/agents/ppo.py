"""PPO on Psi-R2 inside the W0 vector env, with TorchRL (`Collector`, `GAE`, `ClipPPOLoss`).

The vector env (``autoreset_mode=DISABLED``, one batched W0 call per step for its N rows) becomes a
TorchRL env (`make_torchrl_env`: `GymWrapper`, the synergy action map, ``success`` read from the
info). Each iteration collects one episode per row (``frames_per_batch = N x H``), computes GAE
advantages with the critic, and runs ``epochs`` passes of clipped-PPO minibatch updates on the actor
(R2, from its behaviour-cloning weights) and the critic.

The env's reward is whatever its reward model says (by default: track the human demo's object
trajectory on W0's frames + a bonus if W0's final frame shows success): PPO optimises W0's opinion.
What that is worth is measured elsewhere, by the simulator, on trajectories PPO never saw scored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psi_gym.agents.modules import make_actor, make_critic, make_torchrl_env
from psi_gym.agents.policy import PsiR2Policy


@dataclass
class PPOConfig:
    """Hyper-parameters of `ppo_refine` (CleanRL's continuous-action defaults where they fit)."""

    iterations: int = 20
    """collect-and-update rounds (one episode per env row each)."""
    epochs: int = 4
    """passes over each batch."""
    minibatch_size: int = 64
    learning_rate: float = 3e-4
    """actor learning rate (the critic's is 3x)."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.2
    entropy_coeff: float = 1e-3
    critic_coeff: float = 0.5
    max_grad_norm: float = 0.5
    log_std: float | None = -1.0
    """reset the policy's exploration noise (pre-tanh log std) before training; None keeps it."""
    checkpoint_every: int = 5
    """save R2 (``checkpoint-<iteration>/``) every this many iterations (0: never)."""
    seed: int = 0
    progress: bool = True


@dataclass
class PPOSummary:
    """What `ppo_refine` did (per-iteration history of the env's own numbers: W0's opinion)."""

    iterations: int
    frames: int
    num_envs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)


def success_reader(num_envs: int) -> Any:
    """An info reader putting the env's ``info["success"]`` (the verdict) into ``("next", "success")``."""
    from torchrl.data import Unbounded
    from torchrl.envs.gym_like import default_info_dict_reader

    return default_info_dict_reader(["success"], spec={"success": Unbounded((num_envs,), dtype=torch.bool)})


def ppo_refine(vector_env: Any, policy: PsiR2Policy, config: PPOConfig | None = None, out: str | Path | None = None,
               on_iteration: Callable[[dict[str, float]], None] | None = None) -> PPOSummary:
    """Fine-tune ``policy`` in place with PPO on ``vector_env`` (a PsiW0-Retarget vector env with
    ``autoreset_mode=DISABLED``). Returns the per-iteration history."""
    from tensordict import TensorDict  # noqa: F401  (TorchRL's own data type)
    from torchrl.collectors import Collector
    from torchrl.envs import GymWrapper
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    from psi_gym.envs.sim_retarget import is_judge

    if is_judge(vector_env):
        raise ValueError("PPO was handed the simulator in its judge role: the judge is evaluation only "
                         "(train in W0, or on the robot: PsiSim-Retarget-v0 with role='robot')")
    config = config or PPOConfig()
    torch.manual_seed(config.seed)
    base = GymWrapper(vector_env)
    base.set_info_dict_reader(success_reader(vector_env.num_envs))
    env = make_torchrl_env(base, policy.policy_config.action_space)
    env.set_seed(config.seed)
    if config.log_std is not None:
        with torch.no_grad():
            policy.log_std.fill_(config.log_std)
    policy.train()
    actor = make_actor(policy)
    critic = make_critic(policy.policy_config)
    num_envs = vector_env.num_envs
    horizon = int(vector_env.unwrapped.core.config.max_episode_steps or 0) or _longest_horizon(vector_env)
    frames_per_batch = num_envs * horizon
    collector = Collector(env, actor, frames_per_batch=frames_per_batch, total_frames=frames_per_batch * config.iterations,
                          auto_register_policy_transforms=False,
                          split_trajs=False, device="cpu")
    advantage = GAE(gamma=config.gamma, lmbda=config.gae_lambda, value_network=critic, average_gae=True)
    loss_module = ClipPPOLoss(actor, critic, clip_epsilon=config.clip_epsilon, entropy_bonus=config.entropy_coeff > 0,
                              entropy_coeff=config.entropy_coeff, critic_coeff=config.critic_coeff,
                              loss_critic_type="smooth_l1", normalize_advantage=True)
    optimizer = torch.optim.Adam([
        {"params": list(actor.parameters()), "lr": config.learning_rate},
        {"params": list(critic.parameters()), "lr": 3 * config.learning_rate},
    ])
    out = Path(out) if out is not None else None
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.iterations, desc="ppo", unit="iter")
    summary = PPOSummary(iterations=0, frames=0, num_envs=num_envs, seconds=0.0)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    for iteration, data in enumerate(collector):
        with torch.no_grad():
            advantage(data)
        flat = data.reshape(-1)
        done = flat["next", "done"].squeeze(-1)
        episode_return = flat["next", "episode_reward"].squeeze(-1)[done]
        episode_success = flat["next", "success"][done].float()
        losses = []
        for _ in range(config.epochs):
            order = torch.randperm(len(flat), generator=generator)
            for first in range(0, len(flat), config.minibatch_size):
                batch = flat[order[first:first + config.minibatch_size]]
                parts = loss_module(batch)
                loss = parts["loss_objective"] + parts["loss_critic"] + parts.get("loss_entropy", torch.zeros(()))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), config.max_grad_norm)
                optimizer.step()
                losses.append([float(parts["loss_objective"].detach()), float(parts["loss_critic"].detach())])
        collector.update_policy_weights_()
        record = {
            "iteration": iteration,
            "w0_return": float(episode_return.mean()) if len(episode_return) else float("nan"),
            "w0_success": float(episode_success.mean()) if len(episode_success) else float("nan"),
            "episodes": int(done.sum()),
            "loss_objective": float(np.mean([l[0] for l in losses])),
            "loss_critic": float(np.mean([l[1] for l in losses])),
            "action_std": float(policy.log_std.detach().exp().mean()),
        }
        summary.history.append(record)
        summary.iterations = iteration + 1
        summary.frames += len(flat)
        if on_iteration is not None:
            on_iteration(record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({"w0_return": f"{record['w0_return']:.2f}", "w0_success": f"{record['w0_success']:.2f}"})
        if out is not None and config.checkpoint_every and (iteration + 1) % config.checkpoint_every == 0:
            summary.checkpoints.append(str(save_policy(policy, out / f"checkpoint-{iteration + 1:04d}", record)))
    collector.shutdown()
    if bar is not None:
        bar.close()
    policy.eval()
    summary.seconds = time.perf_counter() - start
    if out is not None:
        summary.checkpoints.append(str(save_policy(policy, out / "final", asdict(summary))))
    return summary


def _longest_horizon(vector_env: Any) -> int:
    core = vector_env.unwrapped.core
    demos = core.demos
    return max(demos[int(i)].context.num_steps for i in demos.eligible) + int(core.config.episode_slack)


def save_policy(policy: PsiR2Policy, folder: Path, state: dict[str, Any] | None = None) -> Path:
    """``policy.save_pretrained`` into ``folder`` crash-safely (a temporary folder, then a rename)."""
    from psi_gym.data.atomic import replacing_dir

    with replacing_dir(folder) as tmp:
        policy.save_pretrained(tmp)
        if state is not None:
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, default=float), encoding="utf-8")
    return folder


__all__ = ["PPOConfig", "PPOSummary", "ppo_refine", "save_policy", "success_reader"]
