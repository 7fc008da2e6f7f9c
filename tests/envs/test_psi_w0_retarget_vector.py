"""The native vector env: make_vec, autoreset modes, batched vs single, limits, render, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

from psi_gym.envs.psi_w0_retarget_vector import PsiW0RetargetVectorEnv

from .helpers import SucceedAt

ENV_ID = "PsiW0-Retarget-v0"
ZERO = np.zeros((3, 22), np.float32)


def test_make_vec_gives_the_native_vector_env(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=3, **env_kwargs)
    assert isinstance(envs, PsiW0RetargetVectorEnv) and isinstance(envs, gym.vector.VectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.action_space.shape == (3, 22) and envs.single_action_space.shape == (22,)
    assert envs.observation_space["pixels"].shape == (3, 64, 64, 3)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space and info["step"].tolist() == [0, 0, 0]
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert obs in envs.observation_space and reward.shape == (3,) and reward.dtype == np.float32
    assert terminated.dtype == truncated.dtype == np.bool_ and info["step"].tolist() == [1, 1, 1]
    assert envs.core.profile.steps == 1  # one batched world-model call for the three envs
    envs.close()


def test_batched_and_single_envs_agree(env_kwargs):
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (5, 3, 22)).astype(np.float32)
    envs = gym.make_vec(ENV_ID, num_envs=3, **env_kwargs)
    batched = [envs.reset(seed=10)[0]] + [envs.step(a)[0] for a in actions]
    for i in range(3):
        env = gym.make(ENV_ID, **env_kwargs)
        single = [env.reset(seed=10 + i)[0]] + [env.step(a[i])[0] for a in actions]
        for step, (obs_b, obs_s) in enumerate(zip(batched, single)):
            for key in obs_s:
                # per-row noise generators make rows independent of the batch; allow only float
                # round-off between batch sizes (a grey level, 1e-4 in joint units)
                atol = 2 if key == "pixels" else 1e-4
                np.testing.assert_allclose(obs_b[key][i].astype(np.float64), obs_s[key], atol=atol,
                                           err_msg=f"env {i} step {step} {key}")


def test_next_step_autoreset(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=3, max_episode_steps=2, **env_kwargs)
    envs.reset(seed=0)
    envs.step(ZERO)
    _, _, terminated, truncated, info = envs.step(ZERO)
    assert terminated.all() and not truncated.any() and info["step"].tolist() == [2, 2, 2]  # the horizon
    _, reward, terminated, truncated, info = envs.step(ZERO)  # this step resets, ignoring the action
    assert not (terminated | truncated).any() and (reward == 0).all() and info["step"].tolist() == [0, 0, 0]
    assert envs.core.profile.steps == 2  # no world-model call for the reset step
    assert envs.step(ZERO)[4]["step"].tolist() == [1, 1, 1]


def test_same_step_autoreset_gives_final_obs_and_info(world_model_path):
    reward = SucceedAt(step=1)  # "success" on every step: only the last step's counts
    envs = gym.make_vec(ENV_ID, num_envs=3, world_model=str(world_model_path), reward_model=reward,
                        max_episode_steps=2, autoreset_mode=AutoresetMode.SAME_STEP, render_mode="rgb_array")
    envs.reset(seed=0, options={"demo": [0, 1, 2]})
    _, _, terminated, _, info = envs.step(ZERO)
    assert not terminated.any() and not info["success"].any()
    last_frames = envs.render()
    _, rewards, terminated, truncated, info = envs.step(ZERO)
    assert terminated.all() and not truncated.any() and (rewards == 1).all()
    assert info["_final_obs"].all() and info["_final_info"].all()
    assert info["final_info"]["success"].all() and info["final_info"]["step"].tolist() == [2, 2, 2]
    for i in range(3):
        final = info["final_obs"][i]
        assert final["pixels"].shape == (64, 64, 3) and final["progress"].tolist() == [1.0]
        assert not np.array_equal(final["pixels"], last_frames[i])  # the frame of step 2, not step 1
        # the ended episode survives the autoreset
        finished = envs.episode(i, finished=True)
        assert finished.success and finished.num_steps == 2 and finished.metadata["demo_index"] == i
        np.testing.assert_array_equal(finished.frames[-1], final["pixels"])
        np.testing.assert_array_equal(finished.action[-1], info["final_info"]["joint_targets"][i])
        assert envs.episode(i).num_steps == 0  # the new one
    assert info["step"].tolist() == [0, 0, 0]  # obs/info are the new episodes'
    assert envs.step(ZERO)[4]["step"].tolist() == [1, 1, 1]
    assert envs.episode(0, finished=True).num_steps == 2 and envs.episode(0).num_steps == 1


def test_disabled_autoreset_and_reset_mask(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=3, max_episode_steps=2, autoreset_mode="Disabled",
                        render_mode="rgb_array", **env_kwargs)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    envs.reset(seed=0)
    envs.step(ZERO)
    _, _, terminated, _, _ = envs.step(ZERO)
    assert terminated.all()
    with pytest.raises(ResetNeeded, match="reset_mask"):
        envs.step(ZERO)
    mask = np.array([True, False, True])
    kept = envs.render()[1]
    obs, info = envs.reset(options={"reset_mask": mask})
    assert info["_step"].tolist() == [True, False, True] and info["step"][[0, 2]].tolist() == [0, 0]
    np.testing.assert_array_equal(obs["pixels"][1], kept)  # the unmasked env is untouched
    with pytest.raises(ResetNeeded):  # env 1 still ended
        envs.step(ZERO)
    envs.reset(options={"reset_mask": np.array([False, True, False])})
    assert envs.step(ZERO)[4]["step"].tolist() == [1, 1, 1]


def test_seeds_and_demo_lists(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=3, **env_kwargs)
    _, info = envs.reset(seed=[4, None, 6], options={"demo": [5, 6, None]})
    assert info["demo_index"][:2].tolist() == [5, 6]
    single = gym.make(ENV_ID, **env_kwargs)
    single.reset(seed=6)
    assert single.unwrapped.context.demo_id == envs.context(2).demo_id


def test_render_returns_a_tuple_of_frames(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=2, render_mode="rgb_array", **env_kwargs)
    envs.reset(seed=0)
    frames = envs.render()
    assert isinstance(frames, tuple) and len(frames) == 2 and frames[0].shape == (64, 64, 3)


def test_vector_bad_input(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=3, **env_kwargs)
    with pytest.raises(ResetNeeded):
        envs.step(ZERO)
    with pytest.raises(ResetNeeded, match="first reset"):
        envs.reset(options={"reset_mask": np.array([True, False, False])})
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        envs.step(np.zeros(22, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        envs.step(np.full((3, 22), np.nan, np.float32))
    with pytest.raises(ValueError, match="reset_mask"):
        envs.reset(options={"reset_mask": [True, False, True]})
    with pytest.raises(ValueError, match="at least one"):
        envs.reset(options={"reset_mask": np.zeros(3, bool)})
    with pytest.raises(ValueError, match="3 seeds"):
        envs.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="autoreset_mode"):
        gym.make_vec(ENV_ID, num_envs=2, autoreset_mode="sometimes", **env_kwargs)
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec(ENV_ID, num_envs=0, **env_kwargs)
    with pytest.raises(TypeError, match="options must be a dict"):
        envs.reset(options="demo")
    with pytest.raises(ValueError, match="row must be an int in \\[0, 3\\)"):
        envs.episode(3)
    with pytest.raises(ValueError, match="not finished an episode"):
        envs.episode(0, finished=True)


def test_a_bad_demo_choice_resets_no_sub_env(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=3, **env_kwargs)
    _, info = envs.reset(seed=0, options={"demo": [0, 1, 2]})
    envs.step(ZERO)
    with pytest.raises(ValueError, match="unknown demo index 99"):
        envs.reset(options={"demo": [5, 6, 99]})
    assert envs.core.step_count.tolist() == [1, 1, 1]
    assert [envs.core.info(i)["demo_index"] for i in range(3)] == [0, 1, 2]


def test_the_horizon_is_per_sub_env_and_progress_follows_it(env_kwargs):
    from psi_gym.envs.demo_set import load_demo_set

    envs = gym.make_vec(ENV_ID, num_envs=2, episode_slack=3, autoreset_mode=AutoresetMode.DISABLED, **env_kwargs)
    obs, _ = envs.reset(seed=0)
    horizons = [envs.core.starts[i].context.num_steps + 3 for i in range(2)]
    assert envs.core.limit.tolist() == horizons and obs["progress"].tolist() == [[0.0], [0.0]]
    obs, *_ = envs.step(np.zeros((2, 22), np.float32))
    np.testing.assert_allclose(obs["progress"][:, 0], [1 / h for h in horizons])
    assert len(load_demo_set("default")) == 48


def test_a_failed_batched_step_changes_no_sub_env(world_model_path):
    calls = []

    def breaks_on_second_call(batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("reward model broke")
        return np.zeros(len(batch), np.float32)

    envs = gym.make_vec(ENV_ID, num_envs=3, world_model=str(world_model_path), reward_model=breaks_on_second_call)
    envs.reset(seed=0)
    envs.step(ZERO)
    before = envs._observations()
    generators = [g.get_state().clone() for g in envs.core.generators]
    with pytest.raises(RuntimeError, match="broke"):
        envs.step(np.ones((3, 22), np.float32))
    after = envs._observations()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert envs.core.step_count.tolist() == [1, 1, 1]
    assert all(np.array_equal(g.get_state(), s) for g, s in zip(envs.core.generators, generators))


def test_object_shift_moves_w0s_reading_of_the_object(env_kwargs):
    envs = gym.make_vec(ENV_ID, num_envs=3, **env_kwargs)
    envs.reset(seed=0, options={"demo": [0, 1, 2]})
    plain = np.stack([envs.episode(i).object_pose[0, :3] for i in range(3)])
    envs.reset(seed=0, options={"demo": [0, 1, 2], "object_shift": [0.02, -0.01]})  # (2,): every sub-env
    moved = np.stack([envs.episode(i).object_pose[0, :3] for i in range(3)])
    np.testing.assert_allclose(moved - plain, np.tile([0.02, -0.01, 0.0], (3, 1)), atol=1e-6)
    shifts = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.03]])
    envs.reset(seed=0, options={"demo": [0, 1, 2], "object_shift": shifts})
    moved = np.stack([envs.episode(i).object_pose[0, :3] for i in range(3)])
    np.testing.assert_allclose(moved[:, :2] - plain[:, :2], shifts, atol=1e-6)
    for bad, match in ((np.zeros((2, 2)), r"\(2,\) metres .* or \(3, 2\)"), ([0.0, np.nan], "NaN")):
        with pytest.raises(ValueError, match=match):
            envs.reset(seed=0, options={"object_shift": bad})
    np.testing.assert_allclose(np.stack([envs.episode(i).object_pose[0, :3] for i in range(3)]), moved)  # left as it was
    env = gym.make(ENV_ID, **env_kwargs)
    env.reset(seed=0, options={"demo": 0})
    start = env.unwrapped.episode().object_pose[0, :3]
    env.reset(seed=0, options={"demo": 0, "object_shift": (0.0, 0.015)})
    np.testing.assert_allclose(env.unwrapped.episode().object_pose[0, :3] - start, [0.0, 0.015, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(dx, dy\)"):
        env.reset(options={"object_shift": (0.0, 0.0, 0.0)})
    twin = gym.make_vec("PsiSim-Retarget-v0", num_envs=1, role="robot")
    with pytest.raises(ValueError, match="simulator's object is where its scene puts it"):
        twin.reset(seed=0, options={"object_shift": [0.01, 0.0]})
