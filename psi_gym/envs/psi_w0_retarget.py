"""PsiW0-Retarget-v0: refine a retargeted human demonstration inside the Psi-W0 world model."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from psi_gym.data.episode import Episode
from psi_gym.envs.psi_w0_retarget_core import PsiW0RetargetConfig, PsiW0RetargetCore
from psi_gym.rewards.base import EpisodeContext

RENDER_FPS = 10  # the demos' control rate


class PsiW0RetargetEnv(gym.Env):
    """
    ## Description

    A robot hand (6-DoF wrist + 16 finger joints, LEAP/Allegro-like) repeats a human
    demonstration that was retargeted to it kinematically, but the retarget is slightly off
    (the embodiment gap): replayed as is, it often fails. The policy corrects it step by step
    with a residual on the retargeted joint targets. There is no simulator in the loop: each
    step, the action-conditioned video world model **Psi-W0** predicts the next camera frame and
    joint state, and a pluggable reward model judges the predicted frame (by default: does the
    object follow the human demo's object trajectory, and is the task done at the end).

    An episode is one demonstration. `reset` picks one from the demo set (by default the 48
    shipped retargeted demos of ``lift_apple``, ``lift_can`` and ``push_box``, only those whose
    human demonstration succeeded) and starts from its real first robot camera frame and joints.
    It lasts a fixed horizon, and success is judged at its end, as the simulator judges it.

    ## Action Space

    ``Box(-1, 1, (22,), float32)``, one value per joint in the order of
    ``psi_gym.sim.hands.hand_spec("robot").joint_names`` (wrist x, y, z, yaw, pitch, roll, then
    thumb, index, middle, ring, four joints each). Values outside [-1, 1] are clipped; NaN/inf,
    a wrong shape or a non-float dtype raise ``ValueError``.

    | `action_mode`        | joint target sent to the world model                                     |
    |----------------------|--------------------------------------------------------------------------|
    | `"residual"` default | `clip(ref[t+1] + residual_gain * s * a)`; `s` = 3 cm wrist position,      |
    |                      | 0.15 rad wrist rotation, 0.4 rad finger joints; `a = 0` replays the demo |
    | `"absolute"`         | `low + (a + 1) / 2 * (high - low)` over the joint ranges                 |

    ``ref`` is the demo's retargeted reference (clipped to the joint ranges, held at its last
    row past the demo's end); ``clip`` is to the joint ranges. The spaces' ``low``/``high`` are
    the joint ranges widened to hold 0 (the wrist's height is bounded by the table top, 0 m,
    rather than its 2 cm joint limit), as TorchRL's batched ``GymEnv`` needs.

    ## Observation Space

    ``Dict``:

    | key           | space                                         | meaning                                    |
    |---------------|-----------------------------------------------|--------------------------------------------|
    | `pixels`      | `Box(0, 255, (H, W, 3k), uint8)`              | the latest k predicted frames (k =         |
    |               | `(3k, H, W)` with `channels_first=True`       | `frame_stack`, default 1), oldest first,   |
    |               |                                               | stacked along the channels; H = W = the    |
    |               |                                               | world model's image size (64)              |
    | `agent_pos`   | `Box(low, high, (22,), float32)`              | W0's predicted joint state, clipped to the |
    |               |                                               | joint ranges (m, rad)                      |
    | `reference`   | `Box(low, high, (22 h,), float32)`            | the next h = `reference_horizon` (4) rows  |
    |               |                                               | of the reference, `ref[t+1 .. t+h]`,       |
    |               |                                               | flattened row by row (`reshape(h, 22)`)    |
    | `instruction` | `Box(-1, 1, (384,), float32)`                 | MiniLM embedding of the instruction        |
    | `progress`    | `Box(0, 1, (1,), float32)`                    | steps taken / the horizon H: how much of   |
    |               |                                               | the fixed-length episode is left (Markov)  |

    ``info`` holds numbers only (vector envs and TorchRL batch every value): ``task_index`` (into
    ``psi_gym.envs.psi_w0_retarget_core.TASK_NAMES``: lift_apple, lift_can, push_box),
    ``demo_index`` (-1 for a demo passed as an `Episode`), ``step`` (steps taken), ``success``
    (the verdict: False until the last step), ``joint_targets`` ((22,) float32, the absolute
    joint targets the step applied; after `reset`, the start joints the robot holds), and the
    reward model's extras (for the default reward: ``object_distance`` in m and
    ``success_probability`` of the predicted frame). The text is in ``env.unwrapped.context``
    (`psi_gym.rewards.EpisodeContext`: ``task``, ``instruction``, ``demo_id``, ``scene``...).

    ## Rewards

    From the reward model (``reward_model=``), called on the predicted frame and state; on the
    episode's last step it is told so (``RewardInput.last``) and gives the verdict:

    * ``"object_tracking"`` (default): the learned object-state estimator reads the object's
      position ``p`` off the predicted frame; with ``q`` the human demo's object position after
      as many steps, every step pays ``exp(-|p - q| / 0.02 m)``. On the last step, if the
      estimator's success probability on that final frame exceeds 0.5, the episode is a
      success and the step also pays ``success_bonus`` = 10 (`psi_gym.rewards.ObjectTrackingReward`).
    * ``"state_tracking"``: the same tracking and the task's rule read off W0's own object state
      (no estimator; `psi_gym.rewards.StateTrackingReward`).
    * ``"calibrated_state"``: that tracking; on the last step + 20 x the probability that the
      simulator confirms a success, read off the whole object path W0 predicted
      (``RewardInput.object_path``) by a calibrator trained on candidate plans replayed in the
      simulator; a success when the rule holds and that probability is >= 0.5
      (`psi_gym.rewards.CalibratedStateReward`; the shipped calibrator reads the shipped W0).
    * ``"success_classifier"``: 1 on the last step if the estimator's success head says done.
    * your own: an object or function ``batch -> rewards`` or a dotted path
      ``"package.module:Name"`` (`psi_gym.rewards.RewardModel`). A dotted path imports that
      module, running its code: pass only paths you trust.

    ## Starting State

    The demo's first robot camera frame (repeated to fill W0's context and the frame stack)
    and start joints. ``reset(seed=s)`` seeds both the demo draw and W0's sampling noise.
    ``reset(options={"demo": d})``: ``d`` an index into the demo set, a demo id (see
    ``env.unwrapped.context.demo_id``), an `Episode` or a dataset folder to draw from.
    ``reset(options={"object_shift": (dx, dy)})``: W0 reads the object's start position that many
    metres off along x and y and plays the whole episode from there (the drawn object, its
    dynamics and the reward follow; the demo's reference does not): a plan or policy can be
    checked against W0 not seeing the object exactly where the scene has it
    (`psi_gym.agents.search.SearchConfig.robust_starts` scores plans this way). The simulator
    twin refuses it: its object is where its scene puts it.

    ## Episode End

    Every episode lasts exactly its horizon ``H = T + episode_slack`` steps (``T`` = the demo's
    length, 32 for the shipped demos; slack 8), or ``max_episode_steps`` if given:

    1. Termination at step ``H``, the verdict step: ``terminated=True``, ``truncated=False``,
       ``info["success"]`` says whether the task is done at the end of the episode (the task's one
       success definition, `psi_gym.sim.tasks.Task.is_success`, read off the final predicted
       frame by the reward model). Reaching the goal earlier does not end the episode: a box
       sliding over the mark and stopping past it fails, as in the simulator.
    2. Termination before ``H`` only if the reward model reports an irrecoverable failure
       (``terminated``; e.g. ``ObjectTrackingRewardConfig.failure_distance``): not a success.
    3. ``gym.make(..., max_episode_steps=N)``: Gymnasium keeps ``N`` to itself and wraps the env
       in ``TimeLimit(N)``; the env finds that wrapper when it resets and takes ``min(H, N)`` as
       its horizon, so the verdict is given at the wrapper's last step (which also reports
       ``truncated=True``). ``PsiW0RetargetEnv(max_episode_steps=N)`` or
       ``config=PsiW0RetargetConfig(max_episode_steps=N)`` set the horizon without a wrapper.

    Stepping an ended episode, or stepping before `reset`, raises
    ``gymnasium.error.ResetNeeded``. ``env.unwrapped.episode()`` returns the episode so far (or
    the ended one) as a generated `psi_gym.data.episode.Episode`: frames, joint states, the
    joint targets applied (``action``), W0's object positions, the verdict and its provenance;
    ``psi_gym.sim.replay.replay_targets`` replays it in the simulator.

    ## Arguments

    ```python
    import gymnasium as gym
    import psi_gym

    env = gym.make("PsiW0-Retarget-v0", render_mode="rgb_array")
    envs = gym.make_vec("PsiW0-Retarget-v0", num_envs=16)        # one batched W0 call per step
    ```

    Every field of `PsiW0RetargetConfig` is a keyword: ``world_model`` ("default", a folder or a
    `WorldModel`), ``demos`` ("default", a folder of retargeted or human demos, episodes),
    ``reward_model``, ``estimator``, ``action_mode``, ``residual_gain``, ``reference_horizon``,
    ``frame_stack``, ``channels_first``, ``episode_slack``, ``max_episode_steps``,
    ``successful_demos_only``, ``num_inference_steps``, ``device``, ``world_model_dtype``.
    ``render_mode="rgb_array"`` makes `render` return the latest predicted frame (``render_fps`` 10).
    An unknown keyword raises ``TypeError: ... got an unexpected keyword argument 'name'``
    (TorchRL's ``GymEnv`` then applies its ``frame_skip`` itself).

    A `WorldModel` or reward-model object is stepped as is, through ``gym.make`` too (Gymnasium
    passes keyword arguments on uncopied), so a freshly retrained model can be handed in::

        env = gym.make("PsiW0-Retarget-v0", world_model=model, reward_model=my_reward)
        assert env.unwrapped.core.world_model is model

    Names (``"default"``, folders) are resolved once, when the env is made, through the process
    asset cache of `psi_gym.data.assets`, which loads a folder again once new weights are saved
    into it.

    ## Version History

    * v0: initial version. Before release, v0 changed to judge success at the end of the
      episode: every episode lasts its horizon, the verdict on the last step (``terminated``),
      no early termination on success; the ``progress`` observation; numeric infos
      (``task_index`` and ``joint_targets``; the text infos ``task``, ``instruction``, ``demo``
      moved to ``context``); `episode`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS}

    def __init__(self, render_mode: str | None = None, config: PsiW0RetargetConfig | None = None, **options: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = PsiW0RetargetConfig.from_kwargs(config, **options)
        self.core = PsiW0RetargetCore.from_config(self.config, num_envs=1)
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self._row = np.zeros(1, np.int64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"options must be a dict such as {{'demo': 3}} or None, got {type(options).__name__} {options!r}")
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"demo", "object_shift"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; PsiW0-Retarget-v0 takes options={{'demo': ..., "
                             "'object_shift': (dx, dy)}}")
        shift = options.get("object_shift")
        if shift is not None:
            shift = np.asarray(shift, dtype=np.float64)
            if shift.shape != (2,):
                raise ValueError(f"options['object_shift'] must be (dx, dy) in metres, got shape {shift.shape}")
            shift = shift[None]
        self.core.reset(self._row, [self.np_random], [options.get("demo")], horizons=[self._time_limit()],
                        object_shifts=shift)
        return self.core.observation(0), self.core.info(0)

    def _time_limit(self) -> int | None:
        """The step limit of a Gymnasium ``TimeLimit`` wrapper that is resetting this env, if any.

        ``gym.make(id, max_episode_steps=N)`` never hands ``N`` to the env: it builds the env
        without it and wraps it in ``TimeLimit(N)``, which truncates after ``N`` steps but lets
        further steps through. The wrappers resetting the env are on the call stack; the env reads
        the limit there (once per reset) so that its horizon, its verdict and its guard agree with
        the wrapper.
        """
        limits = []
        frame = sys._getframe(1)
        for _ in range(64):  # a wrapper stack is a handful of frames deep
            if frame is None:
                break
            caller = frame.f_locals.get("self")
            if isinstance(caller, gym.wrappers.TimeLimit) and caller.unwrapped is self:
                limit = getattr(caller, "_max_episode_steps", None)
                if isinstance(limit, int) and limit > 0:
                    limits.append(limit)
            frame = frame.f_back
        return min(limits) if limits else None

    def step(self, action: Any):
        core = self.core
        if not core.started[0]:
            raise ResetNeeded("call reset() before step()")
        if core.ended[0]:
            raise ResetNeeded(f"the episode has ended (after {int(core.step_count[0])} of its {int(core.limit[0])} steps); "
                              "call reset() before stepping again")
        actions = core.check_actions(action, self.action_space.shape)[None]
        result = core.step(self._row, actions)
        info = core.info(0)
        info.update({key: value[0].item() if value.ndim == 1 else value[0].copy() for key, value in result.info.items()})
        return core.observation(0), float(result.reward[0]), bool(result.terminated[0]), bool(result.truncated[0]), info

    @property
    def context(self) -> EpisodeContext:
        """What the current episode is about (`psi_gym.rewards.EpisodeContext`: ``task``,
        ``instruction``, ``demo_id``, ``demo_index``, ``scene``, ``reference``, ``human_object_pose``)."""
        return self.core.context(0)

    def episode(self) -> Episode:
        """The current episode (running, or ended: with the verdict) as a generated `Episode`
        (see `PsiW0RetargetCore.episode`)."""
        return self.core.episode(0)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn('render() was called without a render_mode; make the env with render_mode="rgb_array"')
            return None
        if not self.core.started[0]:
            raise ResetNeeded("call reset() before render()")
        return self.core.frame(0)
