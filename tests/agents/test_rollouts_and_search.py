"""Plans through the W0 env and the simulator: the env's joint targets are `horizon_targets`, the
simulator twin agrees with the sim replay, CEM finds an optimum, refiners refuse the judge."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import psi_gym  # noqa: F401
from psi_gym.agents.rollouts import demo_refs, plan_targets, run_plans_in_env, run_plans_in_sim
from psi_gym.agents.search import SearchConfig, cem_search, score_in_env, theta_plan
from psi_gym.sim.verify import verify


@pytest.fixture(scope="module")
def w0_envs():
    return gym.make_vec("PsiW0-Retarget-v0", num_envs=4, autoreset_mode=AutoresetMode.DISABLED,
                        world_model="random:debug", estimator="random")


@pytest.fixture(scope="module")
def sim_envs():
    return gym.make_vec("PsiSim-Retarget-v0", num_envs=3, autoreset_mode=AutoresetMode.DISABLED, role="judge")


def random_plans(demos, seed=0, size=0.5):
    rng = np.random.default_rng(seed)
    return [theta_plan(rng.uniform(-size, size, (3, 10)), demo) for demo in demos]


def test_env_applies_the_horizon_rule(w0_envs):
    demos = demo_refs(w0_envs, [0, 5, 20])
    assert all(d.horizon == d.demo_steps + 8 for d in demos)
    plans = random_plans(demos)
    results = run_plans_in_env(w0_envs, demos, plans, seeds=[1, 2, 3], record_frames=True)
    for demo, plan, targets, actions, frames in zip(demos, plans, results.joint_targets, results.actions, results.frames):
        assert targets.shape == (demo.horizon, 22) and frames.shape == (demo.horizon + 1, 64, 64, 3)
        np.testing.assert_array_equal(targets, plan_targets(demo, plan))  # info["joint_targets"] = the rule
        np.testing.assert_array_equal(actions, plan)


def test_env_episode_verifies_like_the_plan(w0_envs):
    demos = demo_refs(w0_envs, [2])
    plan = random_plans(demos, seed=3)[0]
    run_plans_in_env(w0_envs, demos, [plan], seeds=[0])
    episode = w0_envs.unwrapped.episode(0)
    np.testing.assert_array_equal(episode.action, plan_targets(demos[0], plan))
    assert verify(episode).success == run_plans_in_sim(demos, [plan]).success[0]


def test_simulator_twin_agrees_with_the_sim_replay(sim_envs):
    demos = demo_refs(sim_envs, [0, 1, 2, 3, 16, 32])
    plans = random_plans(demos, seed=1, size=0.4)
    plans[0] = np.zeros_like(plans[0])  # the raw retarget
    twin = run_plans_in_env(sim_envs, demos, plans, seeds=list(range(6)))
    replay = run_plans_in_sim(demos, plans)
    np.testing.assert_array_equal(twin.success, replay.success)
    np.testing.assert_allclose(twin.returns, replay.returns, rtol=1e-4, atol=1e-4)
    episode = sim_envs.unwrapped.episode(0, finished=True)
    assert episode.metadata["role"] == "judge" and episode.metadata["world_model"].startswith("MuJoCo")


def test_cem_finds_the_optimum_of_a_known_score():
    from psi_gym.agents.rollouts import DemoRef

    demo = DemoRef(0, "d", "lift_apple", {}, np.zeros(22, np.float32), np.zeros((5, 22), np.float32),
                   np.zeros((5, 7), np.float32), horizon=6)
    target = theta_plan(np.full((3, 10), 0.4), demo)

    def scorer(demos, plans, seeds):
        return [-float(np.abs(plan - target).sum()) for plan in plans]

    result = cem_search([demo, demo], scorer, SearchConfig(population=32, iterations=12, elites=6),
                        rng=np.random.default_rng(0))
    assert result.theta.shape == (2, 3, 10) and result.rollouts == 2 * 32 * 12
    assert np.abs(result.theta - 0.4).mean() < 0.2  # from 0.4 at the start
    assert (result.mean_returns[:, -1] > 0.8 * result.mean_returns[:, 0]).all()  # negative scores: closer to 0


def test_refiners_refuse_the_judge(sim_envs):
    with pytest.raises(ValueError, match="judge"):
        score_in_env(sim_envs)


def test_object_shift_moves_what_w0_reads_and_the_episode_follows(w0_envs):
    demos = demo_refs(w0_envs, [0, 5])
    plans = random_plans(demos, seed=4)
    shifts = np.array([[0.01, -0.02], [0.0, 0.0]])
    plain = run_plans_in_env(w0_envs, demos, plans, seeds=[7, 8], record_episodes=True)
    moved = run_plans_in_env(w0_envs, demos, plans, seeds=[7, 8], record_episodes=True, object_shifts=shifts)
    start_plain, start_moved = plain.episodes[0].object_pose[0, :3], moved.episodes[0].object_pose[0, :3]
    np.testing.assert_allclose(start_moved - start_plain, [0.01, -0.02, 0.0], atol=1e-6)
    assert not np.allclose(moved.episodes[0].object_pose[-1], plain.episodes[0].object_pose[-1])  # W0 plays it from there
    np.testing.assert_array_equal(moved.episodes[1].object_pose, plain.episodes[1].object_pose)  # an unmoved row: as before
    np.testing.assert_array_equal(moved.returns[1], plain.returns[1])
    with pytest.raises(ValueError, match=r"object_shifts must be \(2, 2\)"):
        run_plans_in_env(w0_envs, demos, plans, seeds=[7, 8], object_shifts=np.zeros((2, 3)))


def test_robust_score_is_the_mean_over_fixed_readings(w0_envs):
    from psi_gym.agents.search import start_readings

    demos = demo_refs(w0_envs, [0, 5, 20])
    plans = random_plans(demos, seed=5)
    seeds = [1, 2, 3]
    robust = score_in_env(w0_envs, robust_starts=2, robust_noise=0.01, seed=11)
    readings = [start_readings(demo, 2, 0.01, 11) for demo in demos]
    np.testing.assert_array_equal(readings[1], start_readings(demos[1], 2, 0.01, 11))  # the same readings every time
    assert not np.allclose(readings[0], readings[1])  # each demo its own
    by_reading = [run_plans_in_env(w0_envs, demos, plans, seeds, object_shifts=np.stack([r[k] for r in readings])).returns
                  for k in range(2)]
    np.testing.assert_allclose(robust(demos, plans, seeds), np.mean(by_reading, axis=0), rtol=1e-6)
    # no noise: the readings are W0's own, the plain score
    np.testing.assert_allclose(score_in_env(w0_envs, robust_starts=3, robust_noise=0.0)(demos, plans, seeds),
                               score_in_env(w0_envs)(demos, plans, seeds), rtol=1e-6)
    result = cem_search(demos[:1], robust, SearchConfig(population=2, iterations=1, elites=1, knots=3))
    assert result.rollouts == 1 * 2 * 1 * 2  # demos x population x iterations x readings
    with pytest.raises(ValueError, match="robust_starts >= 0"):
        SearchConfig(robust_starts=-1)
    with pytest.raises(ValueError, match="robust_noise"):
        score_in_env(w0_envs, robust_starts=2, robust_noise=float("nan"))
