"""The native vector env of PsiW0-Retarget-v0: N episodes, one batched world-model call per step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from psi_gym.data.episode import Episode
from psi_gym.envs.psi_w0_retarget import RENDER_FPS
from psi_gym.envs.psi_w0_retarget_core import PsiW0RetargetConfig, PsiW0RetargetCore
from psi_gym.rewards.base import EpisodeContext


class PsiW0RetargetVectorEnv(VectorEnv):
    """N copies of `PsiW0RetargetEnv` (same spaces, rewards, episode ends; see its docstring)
    stepped by one batched Psi-W0 call: ``gym.make_vec("PsiW0-Retarget-v0", num_envs=N)``.

    Sub-env ``i`` with seed ``s + i`` and the same demos and actions gives the same episode as
    the single env with seed ``s + i`` (each row has its own RNG and W0 noise generator).

    Args:
        num_envs: N.
        autoreset_mode: a `gymnasium.vector.AutoresetMode` (or its value):

            * ``NEXT_STEP`` (default): the step after an episode ends resets that sub-env
              (its action is ignored; reward 0, not terminated/truncated);
            * ``SAME_STEP``: an ending sub-env is reset in the same step; its last observation
              and info are in ``info["final_obs"]`` / ``info["final_info"]`` (masks
              ``info["_final_obs"]``, ``info["_final_info"]``);
            * ``DISABLED``: reset ended sub-envs yourself with
              ``reset(options={"reset_mask": mask})``; stepping one before that raises
              `ResetNeeded` (TorchRL's preferred mode).
        render_mode: ``"rgb_array"``: `render` returns a tuple of the N latest frames.
        config / keywords: the options of `PsiW0RetargetConfig` (``gym.make_vec`` hands
            ``max_episode_steps`` to the env: it is every episode's horizon).

    Every episode lasts its horizon and ends with ``terminated=True`` on its verdict step
    (``info["success"]``); ``truncated`` is always False (see `PsiW0RetargetEnv`, "Episode End").

    ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` (a list gives one seed per sub-env);
    ``options={"demo": d}`` applies ``d`` to every reset sub-env, or give a list of N choices;
    ``options={"object_shift": s}``, ``s`` (2,) or (N, 2) metres: W0 reads each reset sub-env's
    object start that far off along x and y (see `PsiW0RetargetEnv`, "Starting State").

    ``envs.episode(i)`` returns sub-env ``i``'s current episode as a generated `Episode` (running
    or ended); ``envs.episode(i, finished=True)`` its latest ended one, also after an autoreset
    replaced it (`PsiW0RetargetCore.episode`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 render_mode: str | None = None, config: PsiW0RetargetConfig | None = None, **options: Any) -> None:
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]} "
                             f"(gymnasium.vector.AutoresetMode), got {autoreset_mode!r}") from None
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.config = PsiW0RetargetConfig.from_kwargs(config, **options)
        self.core = PsiW0RetargetCore.from_config(self.config, num_envs=num_envs)
        self.num_envs = self.core.num_envs
        self.autoreset_mode = autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode}
        self.render_mode = render_mode
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._autoreset = np.zeros(self.num_envs, bool)

    # ----------------------------------------------------------------------------- reset
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        n = self.num_envs
        if options is not None and not isinstance(options, Mapping):
            raise TypeError("options must be a dict such as {'demo': 3} or {'reset_mask': mask} or None, "
                            f"got {type(options).__name__} {options!r}")
        options = dict(options or {})
        unknown = sorted(set(options) - {"demo", "reset_mask", "object_shift"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; expected 'demo', 'reset_mask' and/or 'object_shift'")
        mask = self._reset_mask(options.pop("reset_mask", None))
        if seed is None or isinstance(seed, (int, np.integer)):
            super().reset(seed=None if seed is None else int(seed))
            seeds = [None] * n if seed is None else [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"seed must be None, an int or a list of {n} seeds (one per sub-env), got {len(seeds)}")
        choices = options.get("demo")
        if not isinstance(choices, (list, tuple, np.ndarray)):
            choices = [choices] * n
        elif len(choices) != n:
            raise ValueError(f"options['demo'] as a list must hold {n} choices (one per sub-env), got {len(choices)}")

        rows = np.flatnonzero(mask)
        shifts = options.get("object_shift")
        if shifts is not None:
            shifts = np.asarray(shifts, dtype=np.float64)
            shifts = np.broadcast_to(shifts, (n, 2)) if shifts.shape == (2,) else shifts
            if shifts.shape != (n, 2):
                raise ValueError(f"options['object_shift'] must be (2,) metres (every reset sub-env) or ({n}, 2) "
                                 f"(one per sub-env), got shape {shifts.shape}")
            shifts = shifts[rows]
        for row in rows:
            if seeds[row] is not None:
                self._rngs[row] = seeding.np_random(seeds[row])[0]
        self.core.reset(rows, [self._rngs[row] for row in rows], [choices[row] for row in rows], object_shifts=shifts)
        self._autoreset[rows] = False
        infos: dict[str, Any] = {}
        for row in rows:
            infos = self._add_info(infos, self.core.info(row), row)
        return self._observations(), infos

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, bool)
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must be a ({self.num_envs},) bool numpy array, "
                             f"got {type(mask).__name__} {getattr(mask, 'dtype', '')} {getattr(mask, 'shape', '')}")
        if not mask.any():
            raise ValueError("options['reset_mask'] must select at least one sub-env")
        if not self.core.started.all() and not mask[~self.core.started].all():
            raise ResetNeeded("the first reset must reset every sub-env: call reset() without reset_mask")
        return mask

    # ------------------------------------------------------------------------------ step
    def step(self, actions: Any):
        core, n = self.core, self.num_envs
        if not core.started.all():
            raise ResetNeeded("call reset() before step()")
        actions = core.check_actions(actions, self.action_space.shape)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            resetting = self._autoreset.copy()
        else:
            resetting = np.zeros(n, bool)
            if self.autoreset_mode == AutoresetMode.DISABLED and core.ended.any():
                raise ResetNeeded(
                    f"sub-env(s) {np.flatnonzero(core.ended).tolist()} ended (terminated or truncated); with "
                    "autoreset_mode=DISABLED reset them with reset(options={'reset_mask': mask}) before stepping"
                )
        stepping = np.flatnonzero(~resetting)
        result = core.step(stepping, actions[stepping])
        rewards = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        rewards[stepping] = result.reward
        terminated[stepping] = result.terminated
        truncated[stepping] = result.truncated

        infos: dict[str, Any] = {}
        step_infos = {}
        for j, row in enumerate(stepping):
            info = core.info(row)
            info.update({key: value[j].item() if value.ndim == 1 else value[j].copy() for key, value in result.info.items()})
            step_infos[row] = info
        ended = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            for row in np.flatnonzero(ended):
                infos = self._add_info(infos, {"final_obs": core.observation(row), "final_info": step_infos[row]}, row)
            resetting = ended
        elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset = ended
        resets = np.flatnonzero(resetting)
        if len(resets):
            core.reset(resets, [self._rngs[row] for row in resets], [None] * len(resets))
            step_infos.update({row: core.info(row) for row in resets})
        for row in range(n):
            infos = self._add_info(infos, step_infos[row], row)
        return self._observations(), rewards, terminated, truncated, infos

    def context(self, row: int) -> EpisodeContext:
        """What sub-env ``row``'s current episode is about (`psi_gym.rewards.EpisodeContext`: task,
        instruction, demo id...; infos hold numbers only)."""
        return self.core.context(row)

    def episode(self, row: int, finished: bool = False) -> Episode:
        """Sub-env ``row``'s current episode (``finished=False``: running or ended) or its latest
        ended one (``finished=True``) as a generated `Episode` (see `PsiW0RetargetCore.episode`)."""
        return self.core.episode(row, finished=finished)

    def _observations(self) -> dict[str, np.ndarray]:
        per_env = [self.core.observation(row) for row in range(self.num_envs)]
        return {key: np.stack([obs[key] for obs in per_env]) for key in self.single_observation_space.spaces}

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        if not self.core.started.all():
            raise ResetNeeded("call reset() before render()")
        return tuple(self.core.frame(row) for row in range(self.num_envs))
