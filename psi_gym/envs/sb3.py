"""A Stable-Baselines3 `VecEnv` over a Gymnasium `VectorEnv` (SB3 has none for those).

SB3's own semantics: ``step_wait`` returns ``(obs, rewards, dones, infos)`` with ``dones =
terminated | truncated``; an ended sub-env is reset at once, its last observation is in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` says whether it was
cut by the time limit rather than terminated.

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    envs = SB3VecEnv("PsiW0-Retarget-v0", num_envs=8)   # builds the native vector env it needs
    model = PPO("MultiInputPolicy", VecMonitor(envs)).learn(10_000)

Given an env id (and ``gym.make_vec`` keywords), the adapter builds the vector env with
``autoreset_mode=SAME_STEP``: an ending sub-env is reset in the same step and its last
observation and info come in ``final_obs`` / ``final_info``, exactly what SB3 wants. Handed an
already-built vector env, it takes ``SAME_STEP`` or ``DISABLED`` (it then resets ended sub-envs
itself with a ``reset_mask``) and refuses ``NEXT_STEP`` (the reset observation would come one
step late), saying how to build one that fits.

Needs the ``sb3`` extra (``pip install "psi_gym[sb3]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3.common.vec_env.base_vec_env import (
        VecEnv,
        VecEnvIndices,
        VecEnvObs,
        VecEnvStepReturn,
    )
except ImportError as error:
    raise ImportError(
        'psi_gym.envs.sb3 needs Stable-Baselines3, the "sb3" extra: pip install "psi_gym[sb3]"'
    ) from error

ENV_ID = "PsiW0-Retarget-v0"
SB3_AUTORESET_MODES = (AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)


def make_sb3_vector_env(env_id: str = ENV_ID, num_envs: int = 1, **make_kwargs: Any) -> gym.vector.VectorEnv:
    """``gym.make_vec(env_id, num_envs, **make_kwargs)`` with the autoreset mode SB3 needs
    (``SAME_STEP`` unless ``autoreset_mode`` asks for ``DISABLED``).

    The mode goes where ``gym.make_vec`` takes it: a keyword of the env's own vector entry point
    (PsiW0-Retarget-v0), or ``vector_kwargs`` of Gymnasium's sync/async vector envs.

    Raises:
        ValueError: ``autoreset_mode`` is not one SB3 can use.
    """
    mode = make_kwargs.pop("autoreset_mode", AutoresetMode.SAME_STEP)
    try:
        mode = AutoresetMode(mode)
    except ValueError:
        raise ValueError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, got {mode!r}") from None
    if mode not in SB3_AUTORESET_MODES:
        raise ValueError(f"SB3VecEnv needs autoreset_mode SAME_STEP (the default) or DISABLED, got {mode.value}: "
                         "with NEXT_STEP the reset observation would reach SB3 one step late")
    spec = gym.spec(env_id)
    vectorization = make_kwargs.get("vectorization_mode")
    native = spec.vector_entry_point is not None and vectorization in (None, "vector_entry_point",
                                                                        gym.VectorizeMode.VECTOR_ENTRY_POINT)
    if native:
        make_kwargs["autoreset_mode"] = mode
    else:
        make_kwargs["vector_kwargs"] = {**dict(make_kwargs.get("vector_kwargs") or {}), "autoreset_mode": mode}
    return gym.make_vec(env_id, num_envs=num_envs, **make_kwargs)


class SB3VecEnv(VecEnv):
    """Stable-Baselines3 view of a `gymnasium.vector.VectorEnv` (see the module doc).

    Args:
        env: an env id (default ``"PsiW0-Retarget-v0"``): the adapter builds the vector env with
            the autoreset mode it needs (`make_sb3_vector_env`); or an already-built vector env
            in ``SAME_STEP`` or ``DISABLED`` autoreset mode.
        num_envs: sub-envs to build (default 1); only with an env id.
        make_kwargs: ``gym.make_vec`` keywords (env options such as ``world_model=``); only with
            an env id.

    Raises:
        ValueError: a built vector env in ``NEXT_STEP`` mode (the message says how to build one).
        TypeError: not a vector env, or ``num_envs`` / keywords with an already-built env.
    """

    def __init__(self, env: gym.vector.VectorEnv | str = ENV_ID, num_envs: int | None = None, **make_kwargs: Any) -> None:
        if isinstance(env, str):
            env = make_sb3_vector_env(env, 1 if num_envs is None else num_envs, **make_kwargs)
        elif num_envs is not None or make_kwargs:
            given = sorted(make_kwargs) + (["num_envs"] if num_envs is not None else [])
            raise TypeError(f"SB3VecEnv takes num_envs and gym.make_vec keywords only with an env id, got {given} "
                            "with an already-built vector env")
        if not isinstance(getattr(env, "unwrapped", None), gym.vector.VectorEnv):
            raise TypeError(f"SB3VecEnv wraps a gymnasium.vector.VectorEnv or an env id, got {type(env).__name__}")
        mode = env.metadata.get("autoreset_mode")
        if mode not in SB3_AUTORESET_MODES:
            shown = mode.value if isinstance(mode, AutoresetMode) else mode
            raise ValueError(
                f"SB3VecEnv needs a vector env with autoreset_mode SAME_STEP or DISABLED, got {shown}. Let it build "
                f"one: SB3VecEnv({ENV_ID!r}, num_envs=8, **env_options) (SAME_STEP), or make it with "
                "gym.make_vec(..., autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)"
            )
        self.env = env
        self.autoreset_mode = mode
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None

    # -------------------------------------------------------------------------- core API
    def reset(self) -> VecEnvObs:
        options = self._merged_options()
        seeds = None if all(seed is None for seed in self._seeds) else list(self._seeds)
        obs, infos = self.env.reset(seed=seeds, options=options)
        self.reset_infos = self._unbatch_infos(infos)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, rewards, terminated, truncated, infos = self.env.step(self._actions)
        self._actions = None
        dones = np.logical_or(terminated, truncated)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and dones.any():
            final_obs, final_info = infos["final_obs"], self._unbatch_infos(infos["final_info"])
            step_infos = [final_info[i] if dones[i] else info for i, info in enumerate(self._unbatch_infos(infos))]
            terminal = {i: final_obs[i] for i in np.flatnonzero(dones)}
        else:
            step_infos = self._unbatch_infos(infos)
            terminal = {i: {key: value[i] for key, value in obs.items()} if isinstance(obs, dict) else obs[i]
                        for i in np.flatnonzero(dones)}
        for i, final in terminal.items():
            step_infos[i]["terminal_observation"] = final
            step_infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if self.autoreset_mode == AutoresetMode.DISABLED and dones.any():
            obs, reset_infos = self.env.reset(options={"reset_mask": dones})
            unbatched = self._unbatch_infos(reset_infos)
            for i in np.flatnonzero(dones):
                self.reset_infos[i] = unbatched[i]
        return obs, np.asarray(rewards, dtype=np.float32), dones, step_infos

    def close(self) -> None:
        self.env.close()

    # -------------------------------------------------------------------------- helpers
    def _unbatch_infos(self, infos: dict[str, Any]) -> list[dict[str, Any]]:
        """Gymnasium's batched info dict (values + ``_key`` masks) -> one dict per sub-env."""
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, value in infos.items():
            if key.startswith("_") or key in ("final_obs", "final_info"):
                continue
            mask = infos.get(f"_{key}", np.ones(self.num_envs, bool))
            values = self._unbatch_infos(value) if isinstance(value, dict) else value
            for i in np.flatnonzero(mask):
                out[i][key] = values[i]
        return out

    def _merged_options(self) -> dict[str, Any] | None:
        # SB3 keeps options per sub-env; a Gymnasium vector env takes one dict.
        if not any(self._options):
            return None
        keys = set().union(*self._options)
        if keys != {"demo"}:
            first = self._options[0]
            if all(option == first for option in self._options):
                return dict(first)
            raise ValueError(f"per-sub-env reset options other than 'demo' must be equal, got {self._options}")
        return {"demo": [option.get("demo") for option in self._options]}

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    # ------------------------------------------------------------ attributes and methods
    # One batched env stands behind all sub-envs: an attribute or method is the vector env's,
    # reported once per requested index.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render()
        return [None] * self.num_envs if frames is None else list(frames)
