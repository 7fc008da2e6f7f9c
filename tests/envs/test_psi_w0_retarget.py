"""PsiW0-Retarget-v0, the single env: registration, API checks, determinism, actions,
observation options, episode end, rendering, demos and bad input (tiny world model, CPU)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded

import psi_gym
from psi_gym.data.lerobot import EpisodeDataset
from psi_gym.envs.demo_set import default_demos_path
from psi_gym.envs.psi_w0_retarget import PsiW0RetargetEnv
from psi_gym.rewards import RewardInput, RewardOutput
from psi_gym.sim.hands import hand_spec, residual_scale
from tests.default_world_model import require_default_world_model

from .helpers import SucceedAt, action_penalty, save_tiny_world_model

ENV_ID = "PsiW0-Retarget-v0"


def test_registered_with_both_entry_points():
    spec = gym.spec(ENV_ID)
    assert spec.entry_point == "psi_gym.envs.psi_w0_retarget:PsiW0RetargetEnv"
    assert spec.vector_entry_point == "psi_gym.envs.psi_w0_retarget_vector:PsiW0RetargetVectorEnv"


def test_import_registers_without_torch():
    code = "import sys, gymnasium, psi_gym; assert 'PsiW0-Retarget-v0' in gymnasium.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_default_make_needs_no_argument():
    from psi_gym.rewards.object_state import default_estimator_path
    from psi_gym.world_model import default_checkpoint_path

    if not (default_checkpoint_path() / "config.json").is_file() or not (default_estimator_path() / "config.json").is_file():
        # Until the checkpoints ship, the error must say what is missing and how to make it.
        with pytest.raises(FileNotFoundError, match="default"):
            gym.make(ENV_ID)
        pytest.skip("the shipped W0 / estimator checkpoints are absent (psi_gym/assets/w0-default, estimator-default)")
    require_default_world_model()
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and env.unwrapped.context.task in ("lift_apple", "lift_can", "push_box")
    assert set(info) == {"task_index", "demo_index", "step", "success", "joint_targets"}
    obs, reward, *_ = env.step(np.zeros(22, np.float32))
    assert obs in env.observation_space and np.isfinite(reward)
    env.close()


def test_model_objects_are_used_as_they_are(world_model_path):
    from psi_gym.world_model import WorldModel

    model, reward = WorldModel.from_pretrained(world_model_path), SucceedAt(step=1000)
    env = gym.make(ENV_ID, world_model=model, reward_model=reward)  # Gymnasium passes kwargs on uncopied
    assert env.unwrapped.core.world_model is model and env.unwrapped.core.reward_model is reward
    envs = gym.make_vec(ENV_ID, num_envs=2, world_model=model, reward_model=reward)
    assert envs.core.world_model is model and envs.core.reward_model is reward
    assert PsiW0RetargetEnv(world_model=model, reward_model=reward).core.world_model is model
    env.reset(seed=0)
    env.step(np.zeros(22, np.float32))
    assert len(reward.calls) == 1  # that very object judged the step


def test_an_env_made_after_retraining_gets_the_new_weights(tmp_path, world_model_path):
    import shutil

    folder = shutil.copytree(world_model_path, tmp_path / "w0")
    first = gym.make(ENV_ID, world_model=str(folder), reward_model=action_penalty).unwrapped.core.world_model
    again = gym.make(ENV_ID, world_model=str(folder), reward_model=action_penalty).unwrapped.core.world_model
    assert again is first  # named once per weights: all envs share the loaded model
    save_tiny_world_model(folder, seed=1)  # new weights saved into the same folder
    second = gym.make(ENV_ID, world_model=str(folder), reward_model=action_penalty).unwrapped.core.world_model
    assert second is not first
    assert not torch.equal(second.transformer.proj_out.weight, first.transformer.proj_out.weight)


def test_spaces_declared_in_constructor(env_kwargs):
    env = gym.make(ENV_ID, **env_kwargs)
    obs_space = env.observation_space
    assert set(obs_space.spaces) == {"pixels", "agent_pos", "reference", "instruction", "progress"}
    assert obs_space["pixels"].shape == (64, 64, 3) and obs_space["pixels"].dtype == np.uint8
    assert obs_space["agent_pos"].shape == (22,) and obs_space["reference"].shape == (4 * 22,)
    assert obs_space["instruction"].shape == (384,)
    assert obs_space["progress"] == gym.spaces.Box(0, 1, (1,), np.float32)
    assert env.action_space == gym.spaces.Box(-1, 1, (22,), np.float32)
    assert env.metadata["render_fps"] == 10


def test_gymnasium_check_env(env_kwargs):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(ENV_ID, render_mode="rgb_array", **env_kwargs)
    check_env(env.unwrapped)


def test_sb3_check_env(env_kwargs):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(ENV_ID, **env_kwargs).unwrapped)
    assert not [str(w.message) for w in caught if "stable_baselines3" in w.filename]


def _rollout(env, seed, actions, options=None):
    obs, info = env.reset(seed=seed, options=options)
    out = [(obs, 0.0, info)]
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        out.append((obs, reward, info))
    return out


def test_seeded_reset_and_step_are_deterministic(env_kwargs):
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 22)).astype(np.float32)
    first = _rollout(gym.make(ENV_ID, **env_kwargs), 7, actions)
    again = _rollout(gym.make(ENV_ID, **env_kwargs), 7, actions)
    for (obs_a, rew_a, info_a), (obs_b, rew_b, info_b) in zip(first, again):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        assert rew_a == rew_b and info_a.keys() == info_b.keys()
        for key in info_a:
            np.testing.assert_array_equal(info_a[key], info_b[key], err_msg=key)
    # same demo, other seed: the world model's noise differs, so do the predicted frames
    other = _rollout(gym.make(ENV_ID, **env_kwargs), 8, actions, options={"demo": first[0][2]["demo_index"]})
    assert not np.array_equal(first[-1][0]["pixels"], other[-1][0]["pixels"])


def test_no_global_rng_use(env_kwargs):
    import torch

    env = gym.make(ENV_ID, **env_kwargs)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    env.reset(seed=0)
    env.step(np.ones(22, np.float32))
    assert torch.equal(torch_state, torch.get_rng_state())
    np.testing.assert_array_equal(numpy_state, np.random.get_state()[1])


def test_default_draw_takes_only_successful_human_demos(env_kwargs):
    dataset = EpisodeDataset(default_demos_path())
    failed = {i for i, e in enumerate(dataset.episodes_table.column("metadata_json").to_pylist()) if '"human_success": false' in e}
    assert failed, "the shipped set has failed human demos"
    env = gym.make(ENV_ID, **env_kwargs)
    drawn = {env.reset(seed=seed)[1]["demo_index"] for seed in range(40)}
    assert drawn.isdisjoint(failed) and len(drawn) > 10
    # an explicit index may still pick one
    assert env.reset(options={"demo": min(failed)})[1]["demo_index"] == min(failed)


def test_demo_by_index_id_episode_and_dataset(env_kwargs):
    env = PsiW0RetargetEnv(**env_kwargs)
    env.reset(options={"demo": 3})
    demo_id = env.context.demo_id
    by_id = env.reset(options={"demo": demo_id})[1]
    assert by_id["demo_index"] == 3 and env.context.demo_id == demo_id
    episode = EpisodeDataset(default_demos_path())[5]
    obs, info = env.reset(options={"demo": episode})
    assert env.context.task == episode.task and info["task_index"] == ["lift_apple", "lift_can", "push_box"].index(episode.task)
    np.testing.assert_array_equal(obs["pixels"], episode.frames[0])  # the robot's real first frame
    env.reset(seed=1, options={"demo": str(default_demos_path())})
    assert env.context.demo_id.startswith(("lift", "push"))


def test_demo_set_is_shared_until_the_dataset_changes(tmp_path):
    from psi_gym.data.lerobot import write_dataset
    from psi_gym.envs.demo_set import load_demo_set

    shipped = EpisodeDataset(default_demos_path())
    write_dataset(tmp_path / "demos", [shipped[0], shipped[1]])
    first = load_demo_set(tmp_path / "demos")
    assert load_demo_set(str(tmp_path / "demos")) is first and len(first) == 2
    write_dataset(tmp_path / "demos", [shipped[0], shipped[1], shipped[2]], overwrite=True)
    assert len(load_demo_set(tmp_path / "demos")) == 3


def test_human_demo_dataset_is_retargeted_on_the_fly(tmp_path, env_kwargs):
    from psi_gym.retarget.human_demos import make_demo
    from psi_gym.data.lerobot import write_dataset

    human = make_demo("lift_apple", seed=5, index=0)
    write_dataset(tmp_path / "human", [human])
    env = gym.make(ENV_ID, demos=tmp_path / "human", successful_demos_only=False, **env_kwargs)
    obs, info = env.reset(seed=0)
    assert env.unwrapped.context.task == "lift_apple" and obs["pixels"].shape == (64, 64, 3)
    # the reference is the retarget of the human demo: same as retarget_episode's
    from psi_gym.retarget.pipeline import reference_from_demo

    reference = np.clip(reference_from_demo(human), *hand_spec("robot").joint_ranges().T)
    np.testing.assert_allclose(obs["reference"].reshape(4, 22), reference[1:5], atol=1e-6)


def test_residual_and_absolute_action_mapping(world_model_path):
    low, high = hand_spec("robot").joint_ranges().T.astype(np.float32)
    reward = SucceedAt(step=1000)
    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=reward, residual_gain=0.5)
    obs, _ = env.reset(seed=0)
    reference = obs["reference"].reshape(-1, 22)[0]  # ref[t+1]: what a zero residual commands
    env.step(np.zeros(22, np.float32))
    np.testing.assert_allclose(reward.calls[-1].target[0], reference, atol=1e-6)
    action = np.full(22, 0.5, np.float32)
    reference = env.core.observation(0)["reference"].reshape(-1, 22)[0]
    env.step(action)
    expected = np.clip(reference + 0.5 * residual_scale(hand_spec("robot")) * action, low, high)
    np.testing.assert_allclose(reward.calls[-1].target[0], expected, atol=1e-6)

    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=reward, action_mode="absolute")
    env.reset(seed=0)
    for value, expected in ((-1.0, low), (1.0, high), (0.0, (low + high) / 2), (3.0, high)):  # outside [-1, 1]: clipped
        env.step(np.full(22, value, np.float32))
        np.testing.assert_allclose(reward.calls[-1].target[0], expected, atol=1e-5)


def test_every_episode_lasts_its_horizon_and_ends_with_the_verdict(env_kwargs):
    env = gym.make(ENV_ID, episode_slack=2, **env_kwargs)
    obs, info = env.reset(seed=0)
    assert obs["progress"].tolist() == [0.0] and info["success"] is False
    steps, terminated = 0, False
    while not terminated:
        obs, _, terminated, truncated, info = env.step(np.zeros(22, np.float32))
        steps += 1
        assert not truncated and obs["progress"][0] == pytest.approx(steps / 34)
    assert steps == 32 + 2 and info["step"] == 34 and obs["progress"].tolist() == [1.0]
    assert info["success"] is False  # a plain reward function gives no verdict
    with pytest.raises(ResetNeeded, match="reset"):
        env.unwrapped.step(np.zeros(22, np.float32))


def test_early_success_is_ignored_and_the_verdict_comes_at_the_end(world_model_path):
    reward = SucceedAt(step=1)  # reports success on every step
    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=reward, max_episode_steps=5)
    env.reset(seed=0)
    results = [env.step(np.zeros(22, np.float32)) for _ in range(5)]
    assert [r[2] for r in results] == [False, False, False, False, True]  # terminated exactly at H
    assert not any(r[3] for r in results)  # the horizon is part of the task: never truncated
    assert [r[4]["success"] for r in results] == [False] * 4 + [True]
    assert [bool(batch.last[0]) for batch in reward.calls] == [False] * 4 + [True]  # the model was told
    with pytest.raises(ResetNeeded, match="5 of its 5 steps"):
        env.step(np.zeros(22, np.float32))
    # the default horizon: T + slack, whatever the reward model says on the way
    env = gym.make(ENV_ID, world_model=str(world_model_path), reward_model=SucceedAt(step=1))
    env.reset(seed=0)
    ends = [env.step(np.zeros(22, np.float32))[2] for _ in range(40)]
    assert ends == [False] * 39 + [True] and env.unwrapped.core.success[0]


class FailsAt:
    """Success on every step, and an irrecoverable failure (``terminated``) at ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, batch: RewardInput) -> RewardOutput:
        return RewardOutput(reward=np.zeros(len(batch), np.float32), success=np.ones(len(batch), bool),
                            terminated=batch.step >= self.step)


def test_a_reward_model_may_end_an_episode_early_as_a_failure(world_model_path):
    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=FailsAt(step=2), max_episode_steps=5)
    env.reset(seed=0)
    assert env.step(np.zeros(22, np.float32))[2] is False
    _, _, terminated, truncated, info = env.step(np.zeros(22, np.float32))
    assert terminated and not truncated and info["success"] is False and info["step"] == 2
    assert env.episode().success is False and env.episode().metadata["ended"] is True


def test_gym_make_max_episode_steps_is_the_horizon_and_the_guard_knows_it(world_model_path):
    # gym.make keeps max_episode_steps to itself and wraps the env in TimeLimit; the env finds it
    env = gym.make(ENV_ID, world_model=str(world_model_path), reward_model=SucceedAt(step=1), max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.core.limit[0] == 2
    first = env.step(np.zeros(22, np.float32))
    assert first[2:4] == (False, False) and first[0]["progress"].tolist() == [0.5]
    _, _, terminated, truncated, info = env.step(np.zeros(22, np.float32))
    assert terminated and truncated and info["success"]  # the verdict; the wrapper says truncated too
    with pytest.raises(ResetNeeded):
        env.step(np.zeros(22, np.float32))
    # a TimeLimit longer than the horizon changes nothing; a wrapper added by hand is found too
    env = gym.wrappers.TimeLimit(PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=action_penalty,
                                                  max_episode_steps=3), max_episode_steps=10)
    env.reset(seed=0)
    assert env.unwrapped.core.limit[0] == 3
    env = gym.wrappers.TimeLimit(PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=action_penalty),
                                 max_episode_steps=4)
    env.reset(seed=0)
    assert env.unwrapped.core.limit[0] == 4
    env.unwrapped.reset(seed=0)  # reset without the wrapper: the env's own horizon
    assert env.unwrapped.core.limit[0] == 40


def test_channels_first_and_frame_stack(env_kwargs):
    env = gym.make(ENV_ID, frame_stack=3, channels_first=True, reference_horizon=2, render_mode="rgb_array", **env_kwargs)
    assert env.observation_space["pixels"].shape == (9, 64, 64)
    assert env.observation_space["reference"].shape == (44,)
    obs, _ = env.reset(seed=0)
    first = obs["pixels"][:3]
    assert all(np.array_equal(obs["pixels"][3 * i: 3 * i + 3], first) for i in range(3))  # first frame repeated
    obs, *_ = env.step(np.zeros(22, np.float32))
    np.testing.assert_array_equal(obs["pixels"][6:], env.render().transpose(2, 0, 1))  # newest last
    np.testing.assert_array_equal(obs["pixels"][3:6], first)
    env = gym.make(ENV_ID, frame_stack=2, **env_kwargs)
    assert env.observation_space["pixels"].shape == (64, 64, 6)
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space


def test_render_and_record_video(tmp_path, env_kwargs):
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo writes videos with moviepy")
    env = gym.make(ENV_ID, render_mode="rgb_array", max_episode_steps=3, **env_kwargs)
    env = gym.wrappers.RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda episode: True,
                                   disable_logger=True)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert videos and videos[0].stat().st_size > 0


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros(21, np.float32), "shape"),
        (np.zeros((1, 22), np.float32), "shape"),
        (np.zeros(22, np.int64), "dtype"),
        (np.full(22, np.nan, np.float32), "NaN"),
        (np.full(22, np.inf, np.float32), "NaN or inf"),
        ("go", "dtype"),
    ],
)
def test_bad_actions_are_refused(env_kwargs, action, match):
    env = PsiW0RetargetEnv(**env_kwargs)
    env.reset(seed=0)
    frame = env.core.frame(0)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    np.testing.assert_array_equal(env.core.frame(0), frame)  # nothing was predicted
    assert env.core.step_count[0] == 0


def test_step_before_reset(env_kwargs):
    with pytest.raises(ResetNeeded, match="reset"):
        PsiW0RetargetEnv(**env_kwargs).step(np.zeros(22, np.float32))
    with pytest.raises(ResetNeeded):  # Gymnasium's order enforcing says so too
        gym.make(ENV_ID, **env_kwargs).step(np.zeros(22, np.float32))


def test_bad_demo_and_options(env_kwargs):
    env = PsiW0RetargetEnv(**env_kwargs)
    with pytest.raises(ValueError, match="unknown demo index 99: .* 0..47"):
        env.reset(options={"demo": 99})
    with pytest.raises(ValueError, match="unknown demo 'nope'"):
        env.reset(options={"demo": "nope"})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"demos": 1})
    with pytest.raises(TypeError, match="options\\['demo'\\]"):
        env.reset(options={"demo": 1.5})


def test_bad_constructor_arguments(env_kwargs, tmp_path):
    # worded as Python words it, so that TorchRL's GymEnv drops its `frameskip` and skips frames itself
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'frame_stak'.*the options are"):
        gym.make(ENV_ID, frame_stak=2, **env_kwargs)
    with pytest.raises(TypeError, match="unexpected keyword argument 'frameskip'"):
        PsiW0RetargetEnv(frameskip=1, **env_kwargs)
    with pytest.raises(ValueError, match="action_mode"):
        gym.make(ENV_ID, action_mode="delta", **env_kwargs)
    with pytest.raises(ValueError, match="frame_stack"):
        gym.make(ENV_ID, frame_stack=0, **env_kwargs)
    with pytest.raises(ValueError, match="unknown reward model 'shiny'.*object_tracking"):
        gym.make(ENV_ID, **{**env_kwargs, "reward_model": "shiny"})
    with pytest.raises(FileNotFoundError):
        gym.make(ENV_ID, **{**env_kwargs, "world_model": str(tmp_path / "missing")})
    with pytest.raises(psi_gym.data.lerobot.DatasetError):
        gym.make(ENV_ID, demos=tmp_path, **env_kwargs)
    with pytest.raises(ValueError, match="render_mode"):
        PsiW0RetargetEnv(render_mode="ansi", **env_kwargs)
    with pytest.raises(ValueError, match="world_model_dtype must be one of .*bfloat16"):
        gym.make(ENV_ID, world_model_dtype="int8", **env_kwargs)


def test_bfloat16_world_model_keeps_the_spaces(env_kwargs):
    env = gym.make(ENV_ID, world_model_dtype="bfloat16", **env_kwargs)
    assert env.unwrapped.core.world_model.dtype == torch.bfloat16
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert obs in env.observation_space and np.isfinite(reward)  # agent_pos stays float32
    env.close()


def test_reward_model_output_is_checked(world_model_path):
    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=lambda batch: np.zeros(3))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="1 rewards"):
        env.step(np.zeros(22, np.float32))
    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=lambda batch: [float("nan")])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.zeros(22, np.float32))


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("channels_first", "no", "channels_first must be a bool"),
        ("successful_demos_only", "no", "successful_demos_only must be a bool"),
        ("channels_first", 1, "channels_first must be a bool"),
        ("max_episode_steps", True, "max_episode_steps must be an int >= 1"),
        ("max_episode_steps", 2.5, "max_episode_steps must be an int >= 1"),
        ("num_inference_steps", 0, "num_inference_steps must be an int >= 1"),
        ("residual_gain", "big", "residual_gain must be a finite number"),
        ("residual_gain", float("nan"), "residual_gain must be a finite number"),
        ("device", "potato", "device must be None .*'cpu', 'cuda', 'cuda:N'.*got 'potato'"),
        ("device", 3, "device must be None"),
    ],
)
def test_options_of_the_wrong_kind_are_refused_by_name(env_kwargs, option, value, match):
    # (gym.make keeps max_episode_steps for its TimeLimit wrapper; the env class and make_vec get it)
    with pytest.raises(ValueError, match=match):
        PsiW0RetargetEnv(**{**env_kwargs, option: value})
    with pytest.raises(ValueError, match=match):
        gym.make_vec(ENV_ID, num_envs=2, **{**env_kwargs, option: value})


def test_cuda_device_without_cuda_says_so(env_kwargs):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="device='cuda', but CUDA is not available"):
        gym.make(ENV_ID, device="cuda", **env_kwargs)


def test_reset_options_must_be_a_dict(env_kwargs):
    env = PsiW0RetargetEnv(**env_kwargs)
    with pytest.raises(TypeError, match="options must be a dict such as \\{'demo': 3\\} or None, got str 'demo'"):
        env.reset(options="demo")
    assert not env.core.started[0]


def test_a_reward_model_returning_none_is_told_what_was_expected(world_model_path):
    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=lambda batch: None)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="returned None; expected a RewardOutput or 1 rewards"):
        env.step(np.zeros(22, np.float32))


class RaisesAt:
    """A reward model that raises on its ``call``-th call."""

    def __init__(self, call: int) -> None:
        self.call, self.calls = call, 0

    def __call__(self, batch: RewardInput) -> np.ndarray:
        self.calls += 1
        if self.calls == self.call:
            raise RuntimeError("reward model broke")
        return np.zeros(len(batch), np.float32)


def test_a_step_whose_reward_model_raises_leaves_the_env_as_it_was(world_model_path):
    env = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=RaisesAt(call=2))
    env.reset(seed=0)
    env.step(np.full(22, 0.3, np.float32))
    core = env.core
    before = {name: getattr(core, name).copy() for name in ("history", "state", "step_count", "joint_target",
                                                             "record_frames", "record_targets", "success", "ended")}
    generator = core.generators[0].get_state().clone()
    observation, info = core.observation(0), core.info(0)
    with pytest.raises(RuntimeError, match="reward model broke"):
        env.step(np.full(22, -0.5, np.float32))
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(core, name), value, err_msg=name)
    assert torch.equal(core.generators[0].get_state(), generator)
    assert core.info(0)["step"] == info["step"] == 1
    np.testing.assert_array_equal(core.observation(0)["pixels"], observation["pixels"])
    # the retried step is the step an env that never failed takes
    after, *_ = env.step(np.full(22, -0.5, np.float32))
    clean = PsiW0RetargetEnv(world_model=str(world_model_path), reward_model=action_penalty)
    clean.reset(seed=0)
    clean.step(np.full(22, 0.3, np.float32))
    expected, *_ = clean.step(np.full(22, -0.5, np.float32))
    np.testing.assert_array_equal(after["pixels"], expected["pixels"])
    np.testing.assert_array_equal(after["agent_pos"], expected["agent_pos"])


def test_the_env_hands_out_the_episode_it_produced(world_model_path):
    from psi_gym.data.episode import Episode
    from psi_gym.sim.replay import replay_targets
    from psi_gym.sim.scene import SceneParams
    from psi_gym.sim.world import get_world

    env = gym.make(ENV_ID, world_model=str(world_model_path), reward_model=SucceedAt(step=1), max_episode_steps=6)
    obs, info = env.reset(seed=3)
    first_frame, targets, actions = obs["pixels"], [], []
    np.testing.assert_array_equal(info["joint_targets"], obs["agent_pos"])  # the robot holds its start joints
    rng = np.random.default_rng(0)
    running = env.unwrapped.episode()
    assert running.num_steps == 0 and running.frames.shape == (1, 64, 64, 3) and not running.success
    terminated = False
    while not terminated:
        action = rng.uniform(-1, 1, 22).astype(np.float32)
        obs, _, terminated, _, info = env.step(action)
        assert info["joint_targets"].shape == (22,) and info["joint_targets"].dtype == np.float32
        targets.append(info["joint_targets"])
        actions.append(action)
        if len(targets) == 3:  # a running episode can be read too
            assert env.unwrapped.episode().num_steps == 3
    episode = env.unwrapped.episode()
    assert isinstance(episode, Episode) and episode.validate() is episode
    assert (episode.source, episode.embodiment, episode.success) == ("generated", "robot", True)
    assert episode.num_steps == 6 and episode.frames.shape == (7, 64, 64, 3)
    np.testing.assert_array_equal(episode.frames[0], first_frame)  # the demo's real first frame
    np.testing.assert_array_equal(episode.frames[-1], env.unwrapped.core.frame(0))
    np.testing.assert_array_equal(episode.action, np.stack(targets))  # what info["joint_targets"] said
    np.testing.assert_array_equal(episode.state[-1], obs["agent_pos"])
    np.testing.assert_allclose(episode.metadata["policy_actions"], np.stack(actions), atol=1e-7)
    # the object pose W0 tracks: read off the first frame, then predicted; orientations as unit quaternions
    assert episode.object_pose.shape == (7, 7)
    np.testing.assert_allclose(np.linalg.norm(episode.object_pose[:, 3:], axis=1), 1.0, atol=1e-5)
    seen = env.unwrapped.core.world_model.initial_state(episode.frames[:1], episode.state[:1])
    np.testing.assert_allclose(episode.object_pose[0, :3], seen.object_position[0].numpy(), atol=1e-6)
    context = env.unwrapped.core.starts[0].context
    assert episode.parent == context.demo_id == episode.metadata["demo_id"] == env.unwrapped.context.demo_id
    assert episode.metadata["demo_index"] == info["demo_index"] and episode.scene == context.scene.to_dict()
    assert np.asarray(episode.metadata["reference"]).shape == context.reference.shape
    assert np.asarray(episode.metadata["human_object_pose"]).shape == context.human_object_pose.shape
    assert episode.metadata["world_model"].startswith("WorldModel(") and "SucceedAt" in episode.metadata["reward_model"]
    assert episode.metadata["seed"] == episode.seed and episode.metadata["horizon"] == 6
    # the joint targets replay in the simulator from the same start
    scene = SceneParams.from_dict(episode.scene)
    recording = replay_targets(get_world("robot", scene.object_kind), scene, episode.action,
                               start_qpos=episode.state[0], render=False)
    assert recording.state.shape == (7, 22) and isinstance(recording.success, bool)
    # the episode is a demo the env can start from again (the flywheel's loop)
    env.reset(options={"demo": episode})
    assert env.unwrapped.context.task == episode.task
